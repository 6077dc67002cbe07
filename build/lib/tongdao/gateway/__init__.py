"""The control plane's side of PoP gateways: enrolment, desired state, acknowledgements, reports."""
