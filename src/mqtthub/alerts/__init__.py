"""Alert rules, their evaluation, their storage and notifications."""
