"""Personal information (PIPL): versioned notices, consents (the separate consent to transfer
abroad among them), export and erasure of a user's personal data, and data-key rotation."""
