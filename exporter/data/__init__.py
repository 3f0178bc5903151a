"""Data access: files and tables, the prediction log, the monitoring history, database
URLs, atomic writes, and the synthetic Telco-like generator."""
