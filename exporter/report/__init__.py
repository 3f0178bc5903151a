"""Reports people read: a monitoring run or a period of the history as one
self-contained HTML page, and the digest that emails it (docs/reports.md).

`content` (what a report says, plain data), `associations` (the correlation matrix),
`charts` (matplotlib to inline SVG), `render` (Jinja2 templates in ``templates/``),
`period` (the history database to a period report), `digest` (the email, smtplib).
"""
