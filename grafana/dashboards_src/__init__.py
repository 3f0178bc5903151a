"""One module per dashboard; each ``build()`` returns the dashboard's JSON data."""
