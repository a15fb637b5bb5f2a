package volumes

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestHelperBinaryMustBeStatic(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, interp string
		want         error
	}{
		{"dynamic", "/lib64/ld-linux-x86-64.so.2", ErrNotStatic},
		{"static", "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, tc.name)
			writeELF(t, p, tc.interp)
			_, err := helperBinary(HelperOptions{Binary: p})
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

// writeELF writes a minimal 64-bit little-endian ELF executable to p: a header
// and, when interp is set, one PT_INTERP program header naming it (what makes
// a binary dynamically linked).
func writeELF(tb testing.TB, p, interp string) {
	tb.Helper()
	const ehsize, phentsize = 64, 56
	var b bytes.Buffer
	phnum := uint16(0)
	if interp != "" {
		phnum = 1
	}
	b.Write([]byte{0x7f, 'E', 'L', 'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	for _, v := range []any{
		uint16(elf.ET_EXEC), uint16(elf.EM_X86_64), uint32(elf.EV_CURRENT), uint64(0x400000),
		uint64(ehsize), uint64(0), uint32(0), uint16(ehsize), uint16(phentsize), phnum, uint16(64), uint16(0), uint16(0),
	} {
		binary.Write(&b, binary.LittleEndian, v)
	}
	if interp != "" {
		off, size := uint64(ehsize+phentsize), uint64(len(interp)+1)
		for _, v := range []any{uint32(elf.PT_INTERP), uint32(elf.PF_R), off, uint64(0), uint64(0), size, size, uint64(1)} {
			binary.Write(&b, binary.LittleEndian, v)
		}
		b.WriteString(interp + "\x00")
	}
	if err := os.WriteFile(p, b.Bytes(), 0o755); err != nil {
		tb.Fatal(err)
	}
}
