"""Cron engine, leader election, job store and Postgres scanners."""
