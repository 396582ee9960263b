"""What happens after a detection: the alarm lifecycle, escalation and notification.

Empty for now; the alert service builds on ``hub``.
"""
