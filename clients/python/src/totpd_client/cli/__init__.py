"""`totpctl`, the command-line client for people, built on :class:`totpd_client.TotpdClient`."""
