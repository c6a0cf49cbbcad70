"""The warehouse layer: settings, connections per role, the embedded server, the bootstrap, reference data.

The lowest layer of the project: it imports nothing else of ours, and everything else imports it."""
