// An Express service that accepts Gatehouse access tokens (docs/protect-your-api.md).
// Run it with `GATEHOUSE_URL=https://auth.example.com node server.mjs`
// (add JWT_SECRET=... only if Gatehouse signs HS256 and this service must share its secret).
import express from 'express';
import { createRemoteJWKSet, errors, jwtVerify } from 'jose';

const GATEHOUSE_URL = process.env.GATEHOUSE_URL; // Gatehouse's PUBLIC_API_URL: the token issuer
const SECRET = process.env.JWT_SECRET;
const CHECK_REVOCATION = process.env.CHECK_REVOCATION === '1'; // also ask Gatehouse about logouts

// EdDSA: Gatehouse's public keys, cached 5 minutes; an unknown kid (after
// `gatehouse keys rotate`) fetches them again, at most once every 5 s.
// HS256: the shared secret itself, which can also mint tokens: keep it as safe as Gatehouse's.
const key = SECRET
  ? new TextEncoder().encode(SECRET)
  : createRemoteJWKSet(new URL('/.well-known/jwks.json', GATEHOUSE_URL), {
      cacheMaxAge: 300_000,
      cooldownDuration: 5_000,
    });
const verifyOptions = {
  algorithms: [SECRET ? 'HS256' : 'EdDSA'], // pinned: the token's own "alg" is never trusted
  issuer: GATEHOUSE_URL, // JWT_ISSUER on Gatehouse (default: PUBLIC_API_URL)
  audience: 'gatehouse', // JWT_AUDIENCE on Gatehouse
  typ: 'at+jwt',
  clockTolerance: 30,
  requiredClaims: ['exp', 'iat', 'sub', 'sid', 'jti'],
};

// API.md §4: tokens carry roles; these are the permissions each role grants.
const ROLE_PERMISSIONS = {
  admin: ['users:read', 'users:write', 'sessions:revoke', 'audit:read', 'ops:read', 'api_keys:manage'],
  operator: ['users:read', 'users:write', 'sessions:revoke', 'audit:read', 'ops:read'],
  support: ['users:read', 'audit:read'],
  user: [],
};
const TITLES = {
  token_missing: 'Authentication required',
  token_expired: 'Access token expired',
  token_invalid: 'Invalid access token',
  session_revoked: 'Session revoked',
  forbidden: 'Forbidden',
  service_unavailable: 'Service unavailable',
};

// Errors in Gatehouse's own shape (RFC 9457 problem details), so one client handler serves both.
function problem(res, status, code, detail, tokenSent = false) {
  if (status === 401) {
    res.set('WWW-Authenticate', tokenSent ? 'Bearer error="invalid_token"' : 'Bearer');
  }
  if (status === 503) res.set('Retry-After', '30');
  res.status(status).type('application/problem+json').send(JSON.stringify({
    type: `/errors/${code}`, title: TITLES[code], status, code, detail,
    ...(status === 503 ? { retry_after: 30 } : {}),
  }));
}

function requireUser(...permissions) {
  return async (req, res, next) => {
    const [scheme, token] = (req.get('authorization') ?? '').split(' ');
    if (scheme?.toLowerCase() !== 'bearer' || !token) {
      return problem(res, 401, 'token_missing', 'This route needs a bearer access token.');
    }
    let payload;
    try {
      ({ payload } = await jwtVerify(token, key, verifyOptions));
    } catch (err) {
      if (err instanceof errors.JWTExpired) {
        return problem(res, 401, 'token_expired', 'The access token has expired.', true);
      }
      if (err instanceof errors.JWKSTimeout || !(err instanceof errors.JOSEError)) {
        return problem(res, 503, 'service_unavailable', "The token issuer's keys cannot be fetched.");
      }
      return problem(res, 401, 'token_invalid', 'The access token is not valid.', true);
    }
    if (CHECK_REVOCATION) {
      // A logged-out session's token is refused at once instead of when it expires.
      const answer = await fetch(new URL('/api/v1/auth/validate', GATEHOUSE_URL), {
        headers: { authorization: `Bearer ${token}` },
        signal: AbortSignal.timeout(5000),
      }).catch(() => null);
      if (answer?.status === 401) {
        return problem(res, 401, (await answer.json()).code, 'The session has ended.', true);
      }
      if (!answer?.ok) {
        return problem(res, 503, 'service_unavailable', 'The token issuer cannot confirm the session.');
      }
    }
    const roles = Array.isArray(payload.roles) ? payload.roles.filter((r) => typeof r === 'string') : [];
    const granted = new Set(roles.flatMap((r) => ROLE_PERMISSIONS[r] ?? []));
    const missing = permissions.filter((p) => !granted.has(p));
    if (missing.length > 0) {
      return problem(res, 403, 'forbidden', `This needs the permission(s) ${missing.join(', ')}.`);
    }
    req.user = { userId: payload.sub, sessionId: payload.sid, roles, permissions: [...granted].sort() };
    return next();
  };
}

const app = express();

app.get('/me', requireUser(), (req, res) => {
  res.json({ user_id: req.user.userId, roles: req.user.roles, permissions: req.user.permissions });
});

app.get('/reports', requireUser('audit:read'), (req, res) => {
  res.json({ reports: [], requested_by: req.user.userId });
});

const server = app.listen(Number(process.env.PORT ?? 3000), '127.0.0.1', () => {
  console.log(`listening on http://127.0.0.1:${server.address().port}`);
});
