"""The faust app, topics, agents, dead-letter topic and replay."""
