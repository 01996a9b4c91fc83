-- mfad schema v13 (PostgreSQL): how a session signed in, and the policy options that read it.
-- signed_in_with: the method of the second factor the sign-in completed with ('passkey',
-- 'totp', 'email', ...), or how it passed without one ('remembered', 'mfa_off', 'enrolment', ...).
-- second_factor_with: the method of the session's latest second factor (sign-in or step-up).
-- NULL in sessions signed in before this version: they count as neither a passkey nor an
-- emergency sign-in.
ALTER TABLE user_sessions ADD COLUMN signed_in_with TEXT;
ALTER TABLE user_sessions ADD COLUMN second_factor_with TEXT;
-- email_recovery: a session signed in with the security email may remove the user's devices.
-- roles_need_passkey: console roles work only in sessions signed in (and stepped up) with a passkey.
ALTER TABLE policy ADD COLUMN email_recovery INTEGER NOT NULL DEFAULT 0;
ALTER TABLE policy ADD COLUMN roles_need_passkey INTEGER NOT NULL DEFAULT 0;
