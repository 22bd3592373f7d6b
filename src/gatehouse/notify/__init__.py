"""User notifications (Web Push, SMS). Only key handling exists so far."""
