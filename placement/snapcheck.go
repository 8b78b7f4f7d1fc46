package placement

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/hashicorp/raft"
)

// checkSnapshots validates the snapshots on disk before Raft restores one.
// Raft falls back from a snapshot that does not restore to an older one;
// this names the damaged file in the log, and when none restores, refuses
// to start with an error naming them, rather than crash or come up with a
// state the other replicas do not have.
func checkSnapshots(store *raft.FileSnapshotStore, dir string, log *slog.Logger) error {
	metas, err := store.List()
	if err != nil {
		return fmt.Errorf("placement snapshots in %s: %w", dir, err)
	}
	var bad []string
	for _, m := range metas {
		file := filepath.Join(dir, "snapshots", m.ID, "state.bin")
		if err := validateSnapshot(store, m.ID); err != nil {
			log.Error("placement snapshot is corrupt; an older one will be tried", "file", file, "err", err)
			bad = append(bad, fmt.Sprintf("%s: %v", file, err))
			continue
		}
		return nil
	}
	if len(bad) > 0 {
		return fmt.Errorf("%w: no snapshot of this node restores (%v); move the damaged files away to rejoin from the other replicas", ErrCorruptSnapshot, bad)
	}
	return nil
}

func validateSnapshot(store *raft.FileSnapshotStore, id string) error {
	_, rc, err := store.Open(id)
	if err != nil {
		return err
	}
	defer rc.Close()
	var s State
	if err := json.NewDecoder(rc).Decode(&s); err != nil {
		return err
	}
	return Validate(&s)
}
