package main

import "context"
import "io"

func runWAN(ctx context.Context, args []string, stdout, stderr io.Writer) error { return nil }
