package storemetrics

// Operations is operations, for the tests.
var Operations = operations
