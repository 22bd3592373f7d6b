"""User notifications (API.md §10): events raised after commit (events.py), queued by the
dispatcher (dispatcher.py) and sent on the user's channels (channels.py)."""
