"""Mail transport: the SMTP implementation of the core's ``Mailer`` and the outbox's metrics.

The core composes and queues messages (``mfad.core.email_codes``, ``mfad.core.outbox``);
this package only delivers them and counts. It imports the core; the core never imports it.
"""
