package consulapi

import "fmt"

// lockChange runs a PUT with ?acquire or ?release.
func (c *call) lockChange(key string, value []byte, q kvQuery) (bool, error) {
	return false, fmt.Errorf("%w: ?acquire and ?release need sessions, which caspaxos's Consul API does not serve yet (docs/consul.md)", errUnsupported)
}
