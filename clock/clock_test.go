package clock

import (
	"reflect"
	"testing"
	"time"
)

func TestFakeOrder(t *testing.T) {
	c := NewFake(time.Unix(1000, 0))
	var got []int
	c.AfterFunc(3*time.Second, func() { got = append(got, 3) })
	c.AfterFunc(1*time.Second, func() {
		got = append(got, 1)
		c.AfterFunc(time.Second, func() { got = append(got, 2) })
	})
	stop := c.AfterFunc(2500*time.Millisecond, func() { got = append(got, 99) })
	if !stop() || stop() {
		t.Fatal("stop")
	}
	c.Advance(2 * time.Second)
	if !reflect.DeepEqual(got, []int{1, 2}) {
		t.Fatalf("after 2s: %v", got)
	}
	c.Advance(time.Second)
	if !reflect.DeepEqual(got, []int{1, 2, 3}) || c.Pending() != 0 {
		t.Fatalf("after 3s: %v", got)
	}
	if !c.Now().Equal(time.Unix(1003, 0)) {
		t.Fatal(c.Now())
	}
}

func TestReal(t *testing.T) {
	done := make(chan struct{})
	(Real{}).AfterFunc(time.Millisecond, func() { close(done) })
	<-done
	if (Real{}).Now().IsZero() {
		t.Fatal("zero")
	}
}
