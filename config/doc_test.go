package config_test

// docs/configuration.md is tied to Variables(): the table must list every
// variable, in order, with the same default and the same accepted form,
// and each example value must load. Adding a variable without documenting
// it fails here.

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/tokend/tokend/config"
)

const configDoc = "../docs/configuration.md"

// docRow is one row of the variables table.
type docRow struct {
	line                           int
	name, def, form, example, what string
}

// unset is how the table writes "no default".
const unset = "*(unset)*"

var codeSpan = regexp.MustCompile("^`([^`]*)`$")

// cellCode returns the content of a cell that is one code span.
func cellCode(cell string) (string, bool) {
	m := codeSpan.FindStringSubmatch(cell)
	if m == nil {
		return "", false
	}
	return m[1], true
}

func readVariablesTable(t *testing.T) []docRow {
	t.Helper()
	data, err := os.ReadFile(configDoc)
	if err != nil {
		t.Fatalf("%v (docs/configuration.md documents every variable)", err)
	}
	var rows []docRow
	inTable := false
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "| Variable | Default | Accepted values | Example | Meaning |") {
			inTable = true
			continue
		}
		if !inTable {
			continue
		}
		if !strings.HasPrefix(line, "|") {
			break // the end of the table
		}
		if strings.HasPrefix(line, "|---") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), " | ")
		if len(cells) != 5 {
			t.Fatalf("%s:%d: want 5 cells separated by \" | \", got %d: %s", configDoc, i+1, len(cells), line)
		}
		for j := range cells {
			cells[j] = strings.TrimSpace(cells[j])
		}
		r := docRow{line: i + 1, form: cells[2], what: cells[4]}
		var ok bool
		if r.name, ok = cellCode(cells[0]); !ok {
			t.Errorf("%s:%d: the variable must be a code span: %s", configDoc, i+1, cells[0])
		}
		if cells[1] != unset {
			if r.def, ok = cellCode(cells[1]); !ok {
				t.Errorf("%s:%d: the default must be a code span or %s: %s", configDoc, i+1, unset, cells[1])
			}
		}
		if r.example, ok = cellCode(cells[3]); !ok || r.example == "" {
			t.Errorf("%s:%d: the example must be a non-empty code span: %s", configDoc, i+1, cells[3])
		}
		rows = append(rows, r)
	}
	if len(rows) == 0 {
		t.Fatalf("%s: no variables table (header \"| Variable | Default | Accepted values | Example | Meaning |\")", configDoc)
	}
	return rows
}

func TestConfigurationDocMatchesVariables(t *testing.T) {
	rows := readVariablesTable(t)
	vars := config.Variables()

	var docNames, codeNames []string
	for _, r := range rows {
		docNames = append(docNames, r.name)
	}
	for _, v := range vars {
		codeNames = append(codeNames, v.Name)
	}
	for _, n := range codeNames {
		if !slices.Contains(docNames, n) {
			t.Errorf("%s does not document %s (add a row to the table)", configDoc, n)
		}
	}
	for _, n := range docNames {
		if !slices.Contains(codeNames, n) {
			t.Errorf("%s documents %s, which config.Variables() does not have", configDoc, n)
		}
	}
	if !t.Failed() && !slices.Equal(docNames, codeNames) {
		t.Errorf("%s lists the variables in another order than config.Variables():\n doc:  %v\n code: %v", configDoc, docNames, codeNames)
	}

	byName := map[string]config.Variable{}
	for _, v := range vars {
		byName[v.Name] = v
	}
	for _, r := range rows {
		v, ok := byName[r.name]
		if !ok {
			continue
		}
		if r.def != v.Default {
			def := "`" + v.Default + "`"
			if v.Default == "" {
				def = unset
			}
			t.Errorf("%s:%d: %s defaults to %q in the doc, %q in config (write %s)", configDoc, r.line, r.name, r.def, v.Default, def)
		}
		if r.form != v.Form {
			t.Errorf("%s:%d: %s accepted values are %q in the doc, %q in config", configDoc, r.line, r.name, r.form, v.Form)
		}
		if r.what == "" {
			t.Errorf("%s:%d: %s has no meaning", configDoc, r.line, r.name)
		}
		// The example is a value the configuration accepts.
		if _, err := config.Load("", []string{r.name + "=" + r.example}); err != nil {
			t.Errorf("%s:%d: the example for %s does not load: %v", configDoc, r.line, r.name, err)
		}
	}
}

// The YAML example of the doc is a configuration file that loads, and the
// environment example sets only real variables.
func TestConfigurationDocExamples(t *testing.T) {
	data, err := os.ReadFile(configDoc)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	yamlBlock := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindStringSubmatch(doc)
	if yamlBlock == nil {
		t.Fatalf("%s has no ```yaml example", configDoc)
	}
	file := t.TempDir() + "/tokend.yaml"
	if err := os.WriteFile(file, []byte(yamlBlock[1]), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(file, nil)
	if err != nil {
		t.Fatalf("the YAML example of %s does not load: %v", configDoc, err)
	}
	if len(c.Audience) != 2 || c.AllowSignup {
		t.Errorf("the YAML example loads as %v", c)
	}

	known := map[string]bool{}
	for _, v := range config.Variables() {
		known[v.Name] = true
	}
	for _, m := range regexp.MustCompile(`(?m)^export ([A-Z_]+)=`).FindAllStringSubmatch(doc, -1) {
		if !known[m[1]] {
			t.Errorf("%s exports %s, which is not a configuration variable", configDoc, m[1])
		}
	}
	// Every variable the prose mentions in a code span exists.
	for _, m := range regexp.MustCompile("`([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)").FindAllStringSubmatch(doc, -1) {
		if !known[m[1]] {
			t.Errorf("%s mentions %s, which is not a configuration variable", configDoc, m[1])
		}
	}
}
