"""Cron timetable, leader election, job store and Postgres scanners."""
