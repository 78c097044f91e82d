// Package dockertest gives tests a docker.Driver on the local engine and
// the agent image built from the working tree.
//
// A missing prerequisite (no engine answering, no busybox-static) skips
// the test, except under CI=true, where it fails: CI must run these
// tests, never quietly skip them. -short skips them too. Every test takes a fresh owner from
// Owner, whose containers are removed when the test ends, pass or fail.
package dockertest

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/client"

	"github.com/hodei-jobs/hodei/provider/docker"
)

// Image is the tag AgentImage builds; it differs from `make image`'s
// hodei-agent:dev so tests never replace a developer's image.
const Image = "hodei-agent:test"

// OwnerPrefix starts every owner id Owner hands out.
const OwnerPrefix = "test-"

// missing skips t, or fails it under CI=true.
func missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s (CI=true: Docker tests must run)", msg)
	}
	t.Skipf("%s; skipping (under CI=true this fails)", msg)
}

// Driver returns a driver on the local engine (DOCKER_HOST or the default
// socket), closed when t ends. With no engine answering it skips t, or
// fails it under CI=true. It skips in -short mode: building the image and
// starting containers takes seconds.
func Driver(t testing.TB, cfg docker.Config) *docker.Driver {
	t.Helper()
	if testing.Short() {
		t.Skip("Docker engine tests are skipped in -short mode")
	}
	d, err := docker.New(cfg)
	if err != nil {
		t.Fatalf("docker.New() = %v", err)
	}
	t.Cleanup(func() { d.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.Ping(ctx); err != nil {
		missing(t, "no Docker engine: %v", err)
	}
	return d
}

// Owner returns an owner id no other test uses and removes every
// container of it when t ends.
func Owner(t testing.TB, d *docker.Driver) string {
	t.Helper()
	b := make([]byte, 6)
	rand.Read(b)
	owner := OwnerPrefix + hex.EncodeToString(b)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if n, err := d.RemoveAll(ctx, owner); err != nil {
			t.Errorf("RemoveAll(%s) = %d, %v", owner, n, err)
		}
	})
	return owner
}

var (
	buildOnce sync.Once
	buildErr  error
)

// AgentImage builds Image from the working tree once per test binary and
// returns its tag. A failed build fails t; missing busybox-static skips it
// (fails under CI=true).
func AgentImage(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		var dir string
		if dir, buildErr = ModuleDir(ctx); buildErr == nil {
			buildErr = BuildAgentImage(ctx, dir, Image)
		}
	})
	if errors.Is(buildErr, errNoBusybox) {
		missing(t, "%v", buildErr)
	}
	if buildErr != nil {
		t.Fatalf("build %s: %v", Image, buildErr)
	}
	return Image
}

// ModuleDir returns the root directory of the main module.
func ModuleDir(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("go env GOMOD: not inside a module")
	}
	return filepath.Dir(mod), nil
}

var errNoBusybox = errors.New("/bin/busybox missing: apt-get install busybox-static")

// BuildAgentImage builds cmd/hodei-agent static from the module at
// moduleDir and, from it and busybox-static, the image tag, the way `make
// image` does (deploy/docker/context.sh lays out the context), through the
// engine's API: no docker CLI and no network needed.
func BuildAgentImage(ctx context.Context, moduleDir, tag string) error {
	if _, err := os.Stat("/bin/busybox"); err != nil && os.Getenv("BUSYBOX") == "" {
		return errNoBusybox
	}
	tmp, err := os.MkdirTemp("", "hodei-agent-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, "hodei-agent")
	gobuild := exec.CommandContext(ctx, "go", "build", "-tags", "grpcnotrace", "-trimpath",
		"-ldflags", "-s -w", "-o", bin, "./cmd/hodei-agent")
	gobuild.Dir = moduleDir
	gobuild.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := gobuild.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/hodei-agent: %w\n%s", err, out)
	}
	dir := filepath.Join(tmp, "context")
	stage := exec.CommandContext(ctx, "bash", filepath.Join(moduleDir, "deploy/docker/context.sh"), "agent", bin, dir)
	if out, err := stage.CombinedOutput(); err != nil {
		return fmt.Errorf("deploy/docker/context.sh: %w\n%s", err, out)
	}
	var tarball bytes.Buffer
	if err := tarDir(&tarball, dir); err != nil {
		return fmt.Errorf("tar build context: %w", err)
	}

	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return err
	}
	defer cli.Close()
	resp, err := cli.ImageBuild(ctx, &tarball, build.ImageBuildOptions{
		Tags:        []string{tag},
		Remove:      true,
		ForceRemove: true,
		Version:     build.BuilderV1, // BuildKit needs a session; V1 builds FROM scratch fine
	})
	if err != nil {
		return fmt.Errorf("docker build %s: %w", tag, err)
	}
	defer resp.Body.Close()
	// The body is a stream of JSON messages; a failed step ends it with
	// an "error" message rather than an HTTP status.
	var log strings.Builder
	dec := json.NewDecoder(resp.Body)
	for {
		var m struct {
			Stream string `json:"stream"`
			Error  string `json:"error"`
		}
		if err := dec.Decode(&m); err == io.EOF {
			return nil
		} else if err != nil {
			return fmt.Errorf("docker build %s: read progress: %w", tag, err)
		}
		log.WriteString(m.Stream)
		if m.Error != "" {
			return fmt.Errorf("docker build %s: %s\n%s", tag, m.Error, log.String())
		}
	}
}

// tarDir writes dir as a tar stream, keeping symlinks and modes (the
// busybox applets are symlinks, /tmp is 1777).
func tarDir(w io.Writer, dir string) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil || path == dir {
			return err
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		var link string
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(path); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		if info.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(tw, f)
		return err
	})
	if err != nil {
		return err
	}
	return tw.Close()
}
