package storage_test

import (
	"testing"

	"github.com/caspaxos/caspaxos/storage"
	"github.com/caspaxos/caspaxos/storage/storagetest"
)

func TestMemoryConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store { return storage.NewMemory() })
}
