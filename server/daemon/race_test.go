//go:build race

package daemon

// raceDetector: the tests run under the race detector.
const raceDetector = true
