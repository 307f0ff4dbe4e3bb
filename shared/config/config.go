// Package config reads a process's configuration from flags, with an environment variable for
// each flag. A flag given on the command line wins over the environment, which wins over the
// default. Every variable is listed by Table, which the README's configuration tables come from.
package config

import (
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"
)

// Set is a named set of configuration variables.
type Set struct {
	fs     *flag.FlagSet
	prefix string
}

// New returns a set whose variables are read from the environment as PREFIX_NAME (NAME being the
// flag name upper-cased, with '-' as '_').
func New(name, envPrefix string) *Set {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	return &Set{fs: fs, prefix: envPrefix}
}

// Env returns the environment variable name of a flag.
func (s *Set) Env(flagName string) string {
	return s.prefix + "_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// String defines a string variable.
func (s *Set) String(name, def, usage string) *string { return s.fs.String(name, def, usage) }

// Int defines an integer variable.
func (s *Set) Int(name string, def int, usage string) *int { return s.fs.Int(name, def, usage) }

// Bool defines a boolean variable.
func (s *Set) Bool(name string, def bool, usage string) *bool { return s.fs.Bool(name, def, usage) }

// Duration defines a duration variable (Go syntax: 500ms, 15s, 2h).
func (s *Set) Duration(name string, def time.Duration, usage string) *time.Duration {
	return s.fs.Duration(name, def, usage)
}

// Float defines a floating-point variable (for scales and ratios, never money).
func (s *Set) Float(name string, def float64, usage string) *float64 {
	return s.fs.Float64(name, def, usage)
}

// Parse reads args (without the program name), then the environment for each flag not given in
// args. An environment value that does not parse is an error naming the variable.
func (s *Set) Parse(args []string) error {
	return s.parse(args, os.LookupEnv)
}

func (s *Set) parse(args []string, lookup func(string) (string, bool)) error {
	s.fs.Usage = func() {
		fmt.Fprintf(s.fs.Output(), "usage of %s (each flag may also be set by its environment variable):\n\n", s.fs.Name())
		io.WriteString(s.fs.Output(), s.Table())
	}
	if err := s.fs.Parse(args); err != nil {
		return err
	}
	given := map[string]bool{}
	s.fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	s.fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] || err != nil {
			return
		}
		if v, ok := lookup(s.Env(f.Name)); ok {
			if e := s.fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("config: %s=%q: %w", s.Env(f.Name), v, e)
			}
		}
	})
	return err
}

// Table renders the variables as a Markdown table: variable, flag, default, meaning.
func (s *Set) Table() string {
	var rows []string
	s.fs.VisitAll(func(f *flag.Flag) {
		def := f.DefValue
		if def == "" {
			def = "(empty)"
		}
		rows = append(rows, fmt.Sprintf("| `%s` | `-%s` | `%s` | %s |", s.Env(f.Name), f.Name, def, f.Usage))
	})
	sort.Strings(rows)
	return "| variable | flag | default | meaning |\n| --- | --- | --- | --- |\n" + strings.Join(rows, "\n") + "\n"
}
