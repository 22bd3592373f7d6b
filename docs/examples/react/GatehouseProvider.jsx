/**
 * A React provider over gatehouse-client.js, and the `useSession` hook.
 *
 * One client per provider, created on mount from the `createClient` you pass and
 * closed on unmount. Load `createClient` from the service, so it is never a stale
 * copy: `import { createClient } from "/static/gatehouse-client.js"` (a bundler
 * that leaves URL imports alone), or a function that imports it on demand and
 * returns a promise of the client (Next.js: docs/migration.md). Two providers in one tab,
 * or React's development double mount, share one session: the client does that.
 *
 *   <GatehouseProvider createClient={createClient} options={{ mode: "cookie" }}>
 *     <App />
 *   </GatehouseProvider>
 *
 *   const { status, user, login, verifyMfa, logout, logoutAll, client } = useSession();
 *
 * `status` is "loading" (restoring the session after a page load), "signedOut",
 * "mfa" (the password was right, a code is next: call `verifyMfa(code)`) or
 * "signedIn". `endedBy` holds the code that ended the last session in this tab
 * (`session_revoked`, `refresh_expired`, ...), for a notice on the sign-in page.
 * Errors reach the caller as `GatehouseError` (branch on `.code`, docs/errors.md);
 * only the codes that end a session sign the user out.
 */
import { createContext, useContext, useEffect, useMemo, useRef, useState } from "react";

const SessionContext = createContext(null);

const SIGNED_OUT = { status: "signedOut", user: null, endedBy: null };

export function GatehouseProvider({ createClient, options = {}, children }) {
  const [state, setState] = useState({ ...SIGNED_OUT, status: "loading" });
  const [client, setClient] = useState(null);
  const mfaToken = useRef(null);
  // Options are read once, like the client reads its own.
  const initial = useRef(options);

  useEffect(() => {
    let live = true;
    let created = null;
    (async () => {
      created = await createClient({
        ...initial.current,
        onSessionExpired(code) {
          if (live) setState({ ...SIGNED_OUT, endedBy: code });
          initial.current.onSessionExpired?.(code);
        },
      });
      if (!live) return created.close();
      setClient(created);
      const restored = await created.restore();
      if (live) setState(restored ? { status: "signedIn", user: restored.user, endedBy: null } : SIGNED_OUT);
    })().catch(() => live && setState(SIGNED_OUT)); // server unreachable: sign-in shows, a session stays
    return () => {
      live = false;
      created?.close();
    };
  }, [createClient]);

  const value = useMemo(() => {
    const signedIn = ({ user }) => {
      mfaToken.current = null;
      setState({ status: "signedIn", user, endedBy: null });
      return user;
    };
    return {
      ...state,
      client,
      /** → the user, or null when a second factor is needed (status becomes "mfa"). */
      async login(email, password) {
        try {
          return signedIn(await client.login(email, password));
        } catch (error) {
          if (error.code !== "mfa_required") throw error;
          mfaToken.current = error.mfaToken;
          setState({ status: "mfa", user: null, endedBy: null });
          return null;
        }
      },
      /** The second step; `mfa_invalid`: ask again; `mfa_expired`: back to the password. */
      async verifyMfa(code) {
        try {
          return signedIn(await client.verifyMfa(mfaToken.current, code));
        } catch (error) {
          if (error.code === "mfa_expired") setState(SIGNED_OUT);
          throw error;
        }
      },
      async logout() {
        await client.logout();
        setState(SIGNED_OUT);
      },
      async logoutAll() {
        await client.logoutAll();
        setState(SIGNED_OUT);
      },
    };
  }, [state, client]);

  return <SessionContext.Provider value={value}>{children}</SessionContext.Provider>;
}

export function useSession() {
  const session = useContext(SessionContext);
  if (session === null) throw new Error("useSession() needs a <GatehouseProvider> above it");
  return session;
}
