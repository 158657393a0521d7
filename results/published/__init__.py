"""Published semantic-correspondence results (CSV data shipped with corrbench; see README.md)."""
