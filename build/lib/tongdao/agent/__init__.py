"""The gateway agent: drives the PoP's data plane (WireGuard interfaces) to the desired state."""
