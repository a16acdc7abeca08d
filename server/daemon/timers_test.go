package daemon

import (
	"reflect"
	"testing"
)

// Every timer left zero takes its default: a field added to Timers without
// a default in setDefaults would run with a zero timeout.
func TestTimersZeroTakeDefaults(t *testing.T) {
	var got Timers
	got.setDefaults(DefaultTimers())
	want := DefaultTimers()
	v, w := reflect.ValueOf(got), reflect.ValueOf(want)
	for i := range v.NumField() {
		if w.Field(i).IsZero() {
			t.Errorf("Timers.%s has no default", v.Type().Field(i).Name)
		}
		if !v.Field(i).Equal(w.Field(i)) {
			t.Errorf("Timers.%s left zero became %v, want its default %v", v.Type().Field(i).Name, v.Field(i), w.Field(i))
		}
	}
}
