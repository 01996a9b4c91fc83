"""Directories that check the first factor: LDAP / Active Directory (``ldap``) and an
upstream RADIUS server (``radius``). Each implements ``mfad.core.directory.Directory``."""
