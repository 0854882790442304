package events

// Emits is emits, for the tests.
var Emits = emits
