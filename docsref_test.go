package tokend_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

// The repository's docs and comments stand on their own: they state what
// they rely on in their own words and cite what a reader of the repository
// can open — RFC sections, docs/*.md sections, tests — never a
// specification document that is not in it, nor issue numbers of a tracker
// a reader cannot see.
var (
	// A specification document outside the repository, by its file name
	// or as the "spec". (The patterns are spelled so that this file does
	// not match them.)
	citeOutside = regexp.MustCompile(`\bSP[E]C\b|(?i)\bthe spe[c]\b`)
	// An issue tracker's numbers, with or without "#".
	citeIssue = regexp.MustCompile(`(?i)\bissue[s]? #?[0-9]+`)
	// A section sign must belong to a document a reader can look up: an
	// RFC, NIST SP 800-63B or a Unicode annex named shortly before it.
	section      = regexp.MustCompile("\u00a7")
	sectionOwner = regexp.MustCompile(`RFC[\s/]*[0-9]{3,5}|800-63B|UTS ?#[0-9]+|UAX ?#[0-9]+|OpenID|OIDC`)
)

// repoTextFiles returns the repository's own text files (code, docs,
// build files), skipping vendored assets and build output.
func repoTextFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch path {
			case ".git", "bin", "bench-results", "api/swaggerui":
				return filepath.SkipDir
			}
			if d.Name() == "testdata" {
				return filepath.SkipDir
			}
			return nil
		}
		switch filepath.Ext(path) {
		case ".go", ".md", ".yaml", ".yml", ".lua", ".sh", ".mod":
			files = append(files, path)
		}
		switch d.Name() {
		case "Makefile", "Dockerfile":
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func TestDocsCiteWhatReadersCanOpen(t *testing.T) {
	for _, path := range repoTextFiles(t) {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		text := string(data)
		lineOf := func(off int) int { return 1 + strings.Count(text[:off], "\n") }
		for _, re := range []*regexp.Regexp{citeOutside, citeIssue} {
			for _, m := range re.FindAllStringIndex(text, -1) {
				t.Errorf("%s:%d: %q cites what a reader of the repository cannot open: say what it relies on instead", path, lineOf(m[0]), text[m[0]:m[1]])
			}
		}
		for _, m := range section.FindAllStringIndex(text, -1) {
			if !sectionOwner.MatchString(text[max(0, m[0]-200):m[0]]) {
				t.Errorf("%s:%d: a section sign with no RFC or other open document named before it", path, lineOf(m[0]))
			}
		}
	}
}

var (
	mdHeading = regexp.MustCompile("(?m)^#{1,6} +(.+?) *$")
	mdLink    = regexp.MustCompile(`\]\(([A-Za-z0-9_./-]*\.md)?#([^)\s]+)\)`)
)

// githubAnchor is the fragment GitHub gives a Markdown heading: lower
// case, punctuation dropped, spaces as hyphens.
func githubAnchor(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// proseLines returns the lines of the Markdown file path, those inside
// fenced code blocks (and the fences) blanked, so line numbers still hold.
func proseLines(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	inFence := false
	for i, line := range lines {
		fence := strings.HasPrefix(strings.TrimSpace(line), "```")
		if fence {
			inFence = !inFence
		}
		if fence || inFence {
			lines[i] = ""
		}
	}
	return lines
}

// markdownFiles returns README.md, docs/*.md and the repository's other
// Markdown files.
func markdownFiles(t *testing.T) []string {
	var md []string
	for _, path := range repoTextFiles(t) {
		if filepath.Ext(path) == ".md" {
			md = append(md, path)
		}
	}
	return md
}

// Every link to a section of a Markdown file (README.md, docs/*.md) names
// a heading that exists, so renaming a heading cannot leave a dead link.
func TestDocsSectionLinksResolve(t *testing.T) {
	anchors := map[string]map[string]bool{}
	anchorsOf := func(path string) map[string]bool {
		if a, ok := anchors[path]; ok {
			return a
		}
		a, seen := map[string]bool{}, map[string]int{}
		for _, line := range proseLines(t, path) {
			m := mdHeading.FindStringSubmatch(line)
			if m == nil {
				continue
			}
			id := githubAnchor(m[1])
			if n := seen[id]; n > 0 {
				a[id+"-"+strconv.Itoa(n)] = true
			} else {
				a[id] = true
			}
			seen[id]++
		}
		anchors[path] = a
		return a
	}
	for _, path := range markdownFiles(t) {
		for _, m := range mdLink.FindAllStringSubmatch(strings.Join(proseLines(t, path), "\n"), -1) {
			target := path
			if m[1] != "" {
				target = filepath.Join(filepath.Dir(path), m[1])
			}
			if !anchorsOf(target)[m[2]] {
				t.Errorf("%s: link to %s#%s: no such heading", path, target, m[2])
			}
		}
	}
}

var mdOrderedItem = regexp.MustCompile(`^([0-9]+)\. `)

// The numbered steps of README.md and docs/*.md count 1, 2, 3, ... from
// each heading on, whatever prose stands between them.
func TestDocsStepsNumbered(t *testing.T) {
	for _, path := range markdownFiles(t) {
		next := 1
		for i, line := range proseLines(t, path) {
			if mdHeading.MatchString(line) {
				next = 1
			} else if m := mdOrderedItem.FindStringSubmatch(line); m != nil {
				if n, _ := strconv.Atoi(m[1]); n != next {
					t.Errorf("%s:%d: step %d, want %d", path, i+1, n, next)
				}
				next++
			}
		}
	}
}
