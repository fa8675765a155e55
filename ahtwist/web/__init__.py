"""The web server: HTTP plumbing, the JSON action API, routes and static files."""
