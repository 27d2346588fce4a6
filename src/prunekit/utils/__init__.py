"""Small helpers shared by several packages (files, seeding, versions)."""
