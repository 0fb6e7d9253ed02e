"""The web UI for reviewers, finance and engineers: server-rendered pages under /ui."""
