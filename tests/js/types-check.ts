// Type check (npm test runs `tsc -p tests/js/tsconfig.json`): the declarations in
// gatehouse-client.d.ts describe the module's real exports, and every public
// name is usable as documented. The client's own modules are checked too (checkJs),
// their public functions typed by the same declarations.
import {
  createClient,
  GatehouseError,
  installErrorBoundary,
  type ClientOptions,
  type GatehouseClient,
  type Hooks,
  type HookState,
  type SignedIn,
  type User,
} from "../../src/gatehouse/web/static/gatehouse-client.js";
import * as core from "../../src/gatehouse/web/static/client/core.js";
import * as errors from "../../src/gatehouse/web/static/client/errors.js";
import * as boundary from "../../src/gatehouse/web/static/client/error-boundary.js";

// The implementations satisfy the declarations the entry point publishes.
export const implementations: {
  createClient: typeof createClient;
  GatehouseError: typeof GatehouseError;
  installErrorBoundary: typeof installErrorBoundary;
} = {
  createClient: core.createClient,
  GatehouseError: errors.GatehouseError,
  installErrorBoundary: boundary.installErrorBoundary,
};

const options: ClientOptions = {
  baseUrl: "https://auth.example.test",
  mode: "cookie",
  onSessionExpired: (code: string) => void code,
  onError: (error) => void error,
  retry: { limit: 2, maxTotal: 10_000 },
  timeout: 5_000,
  lockTimeout: 2_000,
};

export async function usage(): Promise<void> {
  const client: GatehouseClient = createClient(options);
  const token = createClient({ mode: "token", storage: "localStorage" });
  const signedIn: SignedIn = await client.login("ada@example.test", "pw");
  const user: User | null = client.user;
  void signedIn.user.email;
  void user?.roles;
  try {
    await token.login("ada@example.test", "pw");
  } catch (error) {
    if (error instanceof GatehouseError && error.code === "mfa_required" && error.mfaToken) {
      await token.verifyMfa(error.mfaToken, "123456");
    }
  }
  const restored: SignedIn | null = await client.restore();
  void restored;
  const refreshed: boolean = await client.refresh();
  void refreshed;
  const response: Response = await client.fetch("/api/v1/users/profile");
  void response.status;
  const profile = await client.json<User>("/api/v1/users/profile");
  void profile.name;
  const hooks: Hooks = {
    request: (request: Request, state: HookState) => (state.retryCount > 0 ? new Request(request) : undefined),
    response: (answer: Response) => answer,
    error: (error: GatehouseError) => {
      const status: number = error.status;
      const detail: string = error.detail;
      const requestId: string | null = error.requestId;
      const retryAfter: number | null = error.retryAfter;
      const ends: boolean = error.endsSession;
      void [status, detail, requestId, retryAfter, ends];
    },
  };
  const remove: () => void = client.use(hooks);
  remove();
  await client.logout();
  await client.logoutAll();
  const uninstall: () => void = installErrorBoundary(client, { limit: 10, message: "Oops" });
  uninstall();
  await client.close();
  const made = new GatehouseError({ status: 503, code: "service_unavailable", retryAfter: 2 });
  void made.code;
}
