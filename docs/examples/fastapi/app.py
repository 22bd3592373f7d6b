"""A FastAPI service that accepts Gatehouse access tokens (docs/protect-your-api.md).

Run it with `GATEHOUSE_URL=https://auth.example.com uvicorn app:app`.
"""

import os
from typing import Annotated

from fastapi import Depends, FastAPI

from gatehouse.client.resource import AsyncTokenVerifier, Principal
from gatehouse.client.resource_fastapi import install_problem_details, require_user


def create_app(verifier: AsyncTokenVerifier) -> FastAPI:
    app = FastAPI()
    install_problem_details(app)  # errors as problem+json, like Gatehouse's own
    current_user = Annotated[Principal, Depends(require_user(verifier))]
    auditor = Annotated[Principal, Depends(require_user(verifier, ["audit:read"]))]

    @app.get("/me")
    async def me(user: current_user) -> dict[str, object]:
        return {"user_id": user.user_id, "roles": list(user.roles),
                "permissions": sorted(user.permissions)}

    @app.get("/reports")
    async def reports(user: auditor) -> dict[str, object]:
        return {"reports": [], "requested_by": user.user_id}

    return app


verifier = AsyncTokenVerifier(
    os.environ["GATEHOUSE_URL"],  # Gatehouse's PUBLIC_API_URL: the token issuer
    audience="gatehouse",  # Gatehouse's JWT_AUDIENCE
    check_revocation=True,  # a logout reaches this API within 5 s; drop it to skip the call
)
app = create_app(verifier)
