"""Views: run directories turned into tables (report) and pictures of what the models learned (insight)."""
