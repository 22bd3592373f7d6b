"""Wiring: builds every service from one Settings, for the app and the CLI alike."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from gatehouse.auth.access_tokens import AccessTokens
from gatehouse.auth.apikeys import ApiKeyService
from gatehouse.auth.jwks import KeyRing
from gatehouse.auth.keys import ServerKeys
from gatehouse.auth.mfa import MfaService
from gatehouse.auth.mfa_challenge import MfaChallenges
from gatehouse.auth.mfa_login import MfaLogin
from gatehouse.auth.passwords import PasswordHasher
from gatehouse.auth.revocation import Revocations
from gatehouse.auth.sessions import SessionPolicy, SessionService
from gatehouse.auth.throttle import LoginThrottle, ThrottlePolicy
from gatehouse.notify.alerts import Alerts
from gatehouse.notify.dispatch.channels import Channels
from gatehouse.notify.dispatch.dispatcher import Dispatcher
from gatehouse.notify.dispatch.events import attach
from gatehouse.notify.mail import Mailer
from gatehouse.notify.sms import SmsSender
from gatehouse.notify.webpush import WebPushSender
from gatehouse.ops.metrics import Metrics
from gatehouse.ops.ratelimit import RateLimits
from gatehouse.settings import Settings
from gatehouse.store.db.engine import create_engine, create_sessionmaker
from gatehouse.store.db.units import UnitRunner
from gatehouse.store.kv import KeyValueStore, create_kv
from gatehouse.store.kv.fallback import FallbackKV
from gatehouse.users.accounts import AccountService
from gatehouse.users.phone import PhoneVerification
from gatehouse.users.recovery import Recovery


@dataclass
class Context:
    settings: Settings
    engine: AsyncEngine
    db: async_sessionmaker[AsyncSession]
    kv: KeyValueStore
    metrics: Metrics
    hasher: PasswordHasher
    server_keys: ServerKeys
    key_ring: KeyRing
    tokens: AccessTokens
    revocations: Revocations
    throttle: LoginThrottle
    sessions: SessionService
    accounts: AccountService
    api_keys: ApiKeyService
    rate_limits: RateLimits
    mailer: Mailer
    alerts: Alerts
    recovery: Recovery
    mfa: MfaService
    mfa_login: MfaLogin
    sms: SmsSender
    webpush: WebPushSender
    notifier: Dispatcher
    phone: PhoneVerification

    @classmethod
    def build(cls, settings: Settings) -> Context:
        settings.require_secrets()
        assert settings.encryption_key is not None
        metrics = Metrics()
        engine = create_engine(
            settings.database_url, pool_size=settings.db_pool_size,
            pool_timeout=settings.db_pool_timeout,
            statement_timeout=settings.db_statement_timeout,
            on_pool_timeout=metrics.db_pool_timeouts.inc,
        )
        metrics.watch_pool(engine)
        db = create_sessionmaker(engine)
        kv = create_kv(
            settings.redis_url, settings.redis_prefix, gauge=metrics.cache_fallback_active,
            errors=metrics.dependency_errors.labels("cache"), mode=settings.cache_fallback,
            retry_after=settings.retry_after_seconds,
        )
        hasher = PasswordHasher(
            time_cost=settings.argon2_time_cost,
            memory_kib=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
            workers=settings.hash_workers,
            nice=settings.hash_nice,
            queue_max=settings.hash_queue_max,
            retry_after=settings.retry_after_seconds,
        )
        server_keys = ServerKeys(settings.encryption_key.get_secret_value())
        key_ring = KeyRing(
            settings.jwt_algorithm,
            secret=settings.jwt_secret.get_secret_value() if settings.jwt_secret else None,
            keys_dir=settings.jwt_keys_dir,
        )
        tokens = AccessTokens(
            keys=key_ring, issuer=settings.issuer, audience=settings.jwt_audience,
            ttl=settings.access_token_ttl,
        )
        revocations = Revocations(kv, settings.access_token_ttl, db)
        # With GATEHOUSE_CACHE_FALLBACK=deny, logins answer 503 while Redis is down.
        throttle_kv: KeyValueStore = kv
        if settings.cache_fallback == "deny" and isinstance(kv, FallbackKV):
            throttle_kv = kv.view(deny=True)
        throttle = LoginThrottle(throttle_kv, ThrottlePolicy(
            max_failures=settings.login_max_failures,
            failure_window=settings.login_failure_window,
            max_wait=settings.login_max_wait,
            email_ceiling=settings.login_email_ceiling,
            email_window=settings.login_email_window,
            ip_ceiling=settings.login_ip_ceiling,
            ip_window=settings.login_ip_window,
        ))
        challenges = MfaChallenges(kv, settings.mfa_token_ttl)
        alerts = Alerts(settings, metrics)
        sessions = SessionService(
            db=db, keys=server_keys, tokens=tokens, hasher=hasher, revocations=revocations,
            throttle=throttle, metrics=metrics, challenges=challenges, alerts=alerts,
            units=UnitRunner(engine, settings.database_url),
            policy=SessionPolicy(
                require_verified_email=settings.require_verified_email,
                refresh_ttl=settings.refresh_token_ttl,
                idle_ttl=settings.session_idle_ttl,
                grace_seconds=settings.refresh_grace_seconds,
            ),
        )
        accounts = AccountService(
            db=db, hasher=hasher, sessions=sessions, throttle=throttle,
            password_min_length=settings.password_min_length,
        )
        api_keys = ApiKeyService(db=db, kv=kv, keys=server_keys, skew=settings.signature_skew)
        rate_limits = RateLimits(settings, metrics, kv.health if isinstance(kv, FallbackKV) else None)
        mailer = Mailer(settings, metrics)
        recovery = Recovery(db=db, accounts=accounts, mailer=mailer, settings=settings)
        mfa = MfaService(db=db, keys=server_keys, throttle=throttle, cache=accounts.cache,
                         issuer=settings.mfa_issuer, alerts=alerts)
        mfa_login = MfaLogin(db=db, mfa=mfa, sessions=sessions, challenges=challenges)
        # User notifications (API.md §10): raised after commit by the services above.
        sms = SmsSender(settings)
        webpush = WebPushSender(settings, db, metrics)
        push_ready = bool(settings.vapid_private_key and settings.vapid_subject)
        notifier = Dispatcher(settings, Channels(
            db=db, kv=kv, metrics=metrics, mailer=mailer, sms=sms, app_url=settings.app_url,
            push=webpush if push_ready else None))
        attach(db, notifier)
        phone = PhoneVerification(db=db, kv=kv, keys=server_keys, sms=sms,
                                  cache=accounts.cache, metrics=metrics)
        return cls(
            settings=settings, engine=engine, db=db, kv=kv, metrics=metrics, hasher=hasher,
            server_keys=server_keys, key_ring=key_ring, tokens=tokens, revocations=revocations,
            throttle=throttle, sessions=sessions, accounts=accounts, api_keys=api_keys,
            rate_limits=rate_limits, mailer=mailer, alerts=alerts, recovery=recovery,
            mfa=mfa,
            mfa_login=mfa_login, sms=sms, webpush=webpush, notifier=notifier, phone=phone,
        )

    async def close(self) -> None:
        await self.alerts.close()  # the CLI has no worker: what it emitted is posted here
        await self.notifier.aclose()  # with Redis, the CLI's notices reach a server's queue
        await self.webpush.close()
        self.hasher.close()
        self.sessions.units.close()
        await self.rate_limits.close()
        await self.kv.close()
        await self.engine.dispose()
