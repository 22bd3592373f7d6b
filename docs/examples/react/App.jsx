/**
 * A sign-in page with the second factor, and a signed-in view that calls the API through the
 * client: everything an app needs from useSession(). The accessible names are the console's.
 */
import { useEffect, useState } from "react";
import { useSession } from "./GatehouseProvider.jsx";

function SignIn() {
  const { status, endedBy, login, verifyMfa } = useSession();
  const [error, setError] = useState(null);

  async function submit(event) {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    setError(null);
    try {
      if (status === "mfa") await verifyMfa(form.get("code"));
      else await login(form.get("email"), form.get("password"));
    } catch (failure) {
      // `detail` is written to be shown; `retryAfter` comes with login_throttled.
      setError(failure.retryAfter ? `${failure.detail} (${failure.retryAfter} s)` : failure.detail);
    }
  }

  return (
    <form onSubmit={submit}>
      {endedBy && <p role="status">Your session ended ({endedBy}); sign in again.</p>}
      {status === "mfa" ? (
        <label>Authentication code <input name="code" autoComplete="one-time-code" /></label>
      ) : (
        <>
          <label>Email <input name="email" type="email" autoComplete="username" /></label>
          <label>Password <input name="password" type="password" autoComplete="current-password" /></label>
        </>
      )}
      <button type="submit">{status === "mfa" ? "Verify" : "Sign in"}</button>
      {error && <p role="alert">{error}</p>}
    </form>
  );
}

function Account() {
  const { user, client, logout, logoutAll } = useSession();
  const [profile, setProfile] = useState(null);

  useEffect(() => {
    // Refresh, retries and the CSRF header are the client's business, not this component's.
    client.json("/api/v1/users/profile").then(setProfile, () => setProfile(null));
  }, [client]);

  return (
    <main>
      <h1>Signed in as {user.email}</h1>
      {profile && <p>Name: {profile.name}</p>}
      <button onClick={logout}>Sign out</button>
      <button onClick={logoutAll}>Sign out everywhere</button>
    </main>
  );
}

export function App() {
  const { status } = useSession();
  if (status === "loading") return <p>Loading…</p>;
  return status === "signedIn" ? <Account /> : <SignIn />;
}
