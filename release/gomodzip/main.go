// Command gomodzip writes a Go module the way the Go module proxy serves it, into a
// directory that GOPROXY=file://DIR accepts (`make dist` uses it for clients/go):
//
//	DIR/<escaped module path>/@v/list
//	DIR/<escaped module path>/@v/<version>.info   {"Version": ..., "Time": ...}
//	DIR/<escaped module path>/@v/<version>.mod    the module's go.mod
//	DIR/<escaped module path>/@v/<version>.zip    golang.org/x/mod/zip: the go command's own rules
//
// It also writes DIR/go.sum: the two lines a consumer's go.sum will record for this version
// (the zip's hash and the go.mod's), and prints them.
//
//	go run . -module github.com/totpd/totpd/clients/go -version v0.1.0 \
//	    -dir ../../clients/go -out ../../dist/goproxy -time 2026-12-02T10:00:00Z
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/dirhash"
	"golang.org/x/mod/zip"
)

func main() {
	modPath := flag.String("module", "", "module path, e.g. github.com/totpd/totpd/clients/go")
	version := flag.String("version", "", "semantic version with its v, e.g. v0.1.0")
	dir := flag.String("dir", "", "the module's directory (holds go.mod)")
	out := flag.String("out", "", "root of the file-based module proxy to write into")
	stamp := flag.String("time", "", "the version's time in RFC 3339 (default: now)")
	flag.Parse()
	if err := run(*modPath, *version, *dir, *out, *stamp); err != nil {
		fmt.Fprintln(os.Stderr, "gomodzip:", err)
		os.Exit(1)
	}
}

func run(modPath, version, dir, out, stamp string) error {
	if modPath == "" || version == "" || dir == "" || out == "" {
		return fmt.Errorf("-module, -version, -dir and -out are required")
	}
	mv := module.Version{Path: modPath, Version: version}
	if err := module.Check(mv.Path, mv.Version); err != nil {
		return err
	}
	goMod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		return err
	}
	if got := modfile.ModulePath(goMod); got != modPath {
		return fmt.Errorf("%s/go.mod declares module %q, not %q", dir, got, modPath)
	}
	when := time.Now().UTC()
	if stamp != "" {
		if when, err = time.Parse(time.RFC3339, stamp); err != nil {
			return fmt.Errorf("-time: %w", err)
		}
	}
	escaped, err := module.EscapePath(modPath)
	if err != nil {
		return err
	}
	vdir := filepath.Join(out, filepath.FromSlash(escaped), "@v")
	if err := os.MkdirAll(vdir, 0o755); err != nil {
		return err
	}
	zipPath := filepath.Join(vdir, version+".zip")
	if err := writeZip(zipPath, mv, dir); err != nil {
		return err
	}
	info, err := json.Marshal(struct {
		Version string
		Time    string
	}{version, when.UTC().Format(time.RFC3339)})
	if err != nil {
		return err
	}
	for name, data := range map[string][]byte{
		version + ".info": info,
		version + ".mod":  goMod,
		"list":            []byte(version + "\n"),
	} {
		if err := os.WriteFile(filepath.Join(vdir, name), data, 0o644); err != nil {
			return err
		}
	}
	zipSum, err := dirhash.HashZip(zipPath, dirhash.Hash1)
	if err != nil {
		return err
	}
	// The go command hashes a go.mod as a one-file tree named "go.mod".
	modSum, err := dirhash.Hash1([]string{"go.mod"}, func(string) (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(goMod)), nil
	})
	if err != nil {
		return err
	}
	lines := fmt.Sprintf("%s %s %s\n%s %s/go.mod %s\n", modPath, version, zipSum, modPath, version, modSum)
	if err := os.WriteFile(filepath.Join(out, "go.sum"), []byte(lines), 0o644); err != nil {
		return err
	}
	fmt.Print(lines)
	return nil
}

func writeZip(path string, mv module.Version, dir string) (err error) {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	// The same file selection and checks as the go command (no vendor/, no nested modules,
	// size limits, case-insensitive name clashes).
	return zip.CreateFromDir(f, mv, dir)
}
