"""The web app: pages, JSON API, authentication, sessions."""
