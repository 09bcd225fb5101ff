"""Third-party sign-in for request handlers: OpenID 2.0, OAuth 1.0a, OAuth 2.0, Google,
Facebook and Twitter.

Each mixin goes on a ``RequestHandler``: one method sends the user to the provider, another,
on the way back, checks what the provider says and returns the user as a dict. Provider
endpoints are class attributes (``_OAUTH_AUTHORIZE_URL`` ...) so tests and private deployments
can point them elsewhere.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
import urllib.parse
import uuid
import warnings
from typing import Any, cast

from squall import escape, httpclient
from squall.httputil import url_concat
from squall.web import RequestHandler

_OPENID_AX_NAMESPACE = "http://openid.net/srv/ax/1.0"
_OPENID_IDENTIFIER_SELECT = "http://specs.openid.net/auth/2.0/identifier_select"
_OPENID_AX_TYPES = {
    "name": "http://axschema.org/namePerson",
    "email": "http://axschema.org/contact/email",
    "language": "http://axschema.org/pref/language",
    "username": "http://axschema.org/namePerson/friendly",
}


class AuthError(Exception):
    """The provider refused, or answered something that cannot be trusted."""


def _handler(mixin: object) -> RequestHandler:
    # the mixins are only ever used on RequestHandler subclasses
    return cast(RequestHandler, mixin)


class OpenIdMixin:
    """OpenID 2.0 with the Attribute Exchange extension. Set ``_OPENID_ENDPOINT``."""

    _OPENID_ENDPOINT: str

    def __init__(self) -> None:
        # OpenID 2.0 providers have all but vanished; say so to whoever still builds on it
        warnings.warn(
            "OpenID 2.0 is deprecated; use OAuth 2.0 or OpenID Connect instead",
            DeprecationWarning,
            stacklevel=2,
        )
        super().__init__()

    def authenticate_redirect(
        self,
        callback_uri: str | None = None,
        ax_attrs: list[str] = ["name", "email", "language", "username"],  # noqa: B006
    ) -> None:
        """Redirects to the provider, asking it to come back to ``callback_uri``."""
        handler = _handler(self)
        arguments = self._openid_args(callback_uri or handler.request.uri or "/", ax_attrs)
        endpoint = self._OPENID_ENDPOINT
        handler.redirect(endpoint + "?" + urllib.parse.urlencode(arguments))

    async def get_authenticated_user(
        self, http_client: httpclient.AsyncHTTPClient | None = None
    ) -> dict[str, Any]:
        """On the way back: asks the provider to confirm the response, returns the user."""
        handler = _handler(self)
        # the provider signed what it sent us; it verifies its own signature on request
        arguments = {name: values[-1] for name, values in handler.request.arguments.items()}
        arguments["openid.mode"] = b"check_authentication"
        client = http_client or self.get_auth_http_client()
        response = await client.fetch(
            self._OPENID_ENDPOINT, method="POST", body=urllib.parse.urlencode(arguments)
        )
        return self._on_authentication_verified(response)

    def _openid_args(
        self,
        callback_uri: str,
        ax_attrs: list[str] = [],  # noqa: B006
        oauth_scope: str | None = None,
    ) -> dict[str, str]:
        handler = _handler(self)
        return_to = urllib.parse.urljoin(handler.request.full_url(), callback_uri)
        arguments = {
            "openid.ns": "http://specs.openid.net/auth/2.0",
            "openid.claimed_id": _OPENID_IDENTIFIER_SELECT,
            "openid.identity": _OPENID_IDENTIFIER_SELECT,
            "openid.return_to": return_to,
            "openid.realm": urllib.parse.urljoin(return_to, "/"),
            "openid.mode": "checkid_setup",
        }
        if ax_attrs:
            arguments["openid.ns.ax"] = _OPENID_AX_NAMESPACE
            arguments["openid.ax.mode"] = "fetch_request"
            wanted = []
            for attribute in ax_attrs:
                if attribute == "name":
                    # a full name is asked for as its parts, which providers fill more often
                    parts = {
                        "firstname": "http://axschema.org/namePerson/first",
                        "fullname": _OPENID_AX_TYPES["name"],
                        "lastname": "http://axschema.org/namePerson/last",
                    }
                else:
                    parts = {attribute: _OPENID_AX_TYPES[attribute]}
                for alias, type_uri in parts.items():
                    arguments["openid.ax.type." + alias] = type_uri
                    wanted.append(alias)
            arguments["openid.ax.required"] = ",".join(wanted)
        if oauth_scope:
            arguments["openid.ns.oauth"] = "http://specs.openid.net/extensions/oauth/1.0"
            arguments["openid.oauth.consumer"] = handler.request.host.split(":")[0]
            arguments["openid.oauth.scope"] = oauth_scope
        return arguments

    def _on_authentication_verified(self, response: httpclient.HTTPResponse) -> dict[str, Any]:
        handler = _handler(self)
        body = escape.native_str(response.body)
        if not re.search(r"^is_valid:true$", body, re.MULTILINE):
            raise AuthError(f"Invalid OpenID response: {body!r}")

        # the provider chooses the alias of the AX namespace: find it by its URI
        ax_prefix = None
        for name in handler.request.arguments:
            if name.startswith("openid.ns.") and handler.get_argument(name) == _OPENID_AX_NAMESPACE:
                ax_prefix = "openid." + name[len("openid.ns.") :] + "."
                break

        def attribute(type_uri: str) -> str:
            if ax_prefix is None:
                return ""
            type_prefix = ax_prefix + "type."
            for name in handler.request.arguments:
                if name.startswith(type_prefix) and handler.get_argument(name) == type_uri:
                    alias = name[len(type_prefix) :]
                    return handler.get_argument(ax_prefix + "value." + alias, "") or ""
            return ""

        email = attribute(_OPENID_AX_TYPES["email"])
        name = attribute(_OPENID_AX_TYPES["name"])
        first_name = attribute("http://axschema.org/namePerson/first")
        last_name = attribute("http://axschema.org/namePerson/last")
        username = attribute(_OPENID_AX_TYPES["username"])
        locale = attribute(_OPENID_AX_TYPES["language"]).lower()
        user: dict[str, Any] = {}
        full_name = name or " ".join(part for part in (first_name, last_name) if part)
        for key, value in (
            ("first_name", first_name),
            ("last_name", last_name),
            ("name", full_name),
            ("email", email),
            ("locale", locale),
            ("username", username),
        ):
            if value:
                user[key] = value
        claimed_id = handler.get_argument("openid.claimed_id", None)
        if claimed_id:
            user["claimed_id"] = claimed_id
        return user

    def get_auth_http_client(self) -> httpclient.AsyncHTTPClient:
        """The client used to talk to the provider; override to use another one."""
        return httpclient.AsyncHTTPClient()


_Args = dict[str, Any]
_Client = httpclient.AsyncHTTPClient
# Where an OAuth 1 login keeps its request token between the redirect and the return.
_REQUEST_TOKEN_COOKIE = "_oauth_request_token"


def _present(**arguments: Any) -> _Args:
    """The keyword arguments that were given a value (None means "leave it out")."""
    return {name: value for name, value in arguments.items() if value is not None}


def _pack_request_token(token: _Args) -> bytes:
    # Both halves are base64'd, so the separator cannot occur inside them.
    halves = (base64.b64encode(escape.utf8(token[part])) for part in ("key", "secret"))
    return b"|".join(halves)


def _unpack_request_token(cookie: str) -> tuple[bytes, bytes]:
    halves = cookie.split("|")
    if len(halves) == 2:
        try:
            return base64.b64decode(halves[0]), base64.b64decode(halves[1])
        except ValueError:  # binascii.Error, or characters outside ASCII
            pass
    raise AuthError("Malformed OAuth request token cookie")


class OAuthMixin:
    """OAuth 1.0 and 1.0a (RFC 5849) with HMAC-SHA1 signatures.

    Subclasses set ``_OAUTH_REQUEST_TOKEN_URL``, ``_OAUTH_ACCESS_TOKEN_URL`` and
    ``_OAUTH_AUTHORIZE_URL`` and implement ``_oauth_consumer_token`` and
    ``_oauth_get_user_future``.
    """

    _OAUTH_AUTHORIZE_URL: str
    _OAUTH_REQUEST_TOKEN_URL: str
    _OAUTH_ACCESS_TOKEN_URL: str
    _OAUTH_VERSION = "1.0a"
    _OAUTH_NO_CALLBACKS = False

    async def authorize_redirect(
        self, callback_uri: str | None = None, extra_params: _Args | None = None,
        http_client: _Client | None = None,
    ) -> None:
        """Gets a request token, keeps it in a cookie and redirects to the provider."""
        if callback_uri and self._OAUTH_NO_CALLBACKS:
            raise Exception("This service does not support oauth_callback")
        await self._send_to_provider(
            self._OAUTH_AUTHORIZE_URL, callback_uri, extra_params, http_client, callback_uri
        )

    async def _send_to_provider(
        self, page: str, callback_uri: str | None, extra_params: _Args | None,
        http_client: _Client | None, relayed_callback: str | None,
    ) -> None:
        """The first leg: a request token from the provider, then the user to ``page``."""
        client = http_client or self.get_auth_http_client()
        response = await client.fetch(self._oauth_request_token_url(callback_uri, extra_params))
        self._on_request_token(page, relayed_callback, response)

    async def get_authenticated_user(self, http_client: _Client | None = None) -> _Args:
        """On the way back: trades the request token for an access token, returns the user
        with that token under ``access_token``."""
        handler = _handler(self)
        returned_key = escape.utf8(handler.get_argument("oauth_token") or "")
        verifier = handler.get_argument("oauth_verifier", None)
        cookie = handler.get_cookie(_REQUEST_TOKEN_COOKIE)
        if not cookie:
            raise AuthError("Missing OAuth request token cookie")
        # One use only: a replayed callback finds no cookie.
        handler.clear_cookie(_REQUEST_TOKEN_COOKIE)
        key, secret = _unpack_request_token(cookie)
        if not hmac.compare_digest(key, returned_key):
            raise AuthError("Request token does not match cookie")
        request_token: _Args = {"key": key, "secret": secret}
        if verifier:
            request_token["verifier"] = verifier
        client = http_client or self.get_auth_http_client()
        answer = await client.fetch(self._oauth_access_token_url(request_token))
        access_token = _oauth_parse_response(answer.body)
        user = await self._oauth_get_user_future(access_token)
        if user:
            # Kept with the user, so the application can make signed calls on its behalf.
            user["access_token"] = access_token
            return user
        raise AuthError("Error getting user")

    def _oauth_request_token_url(
        self, callback_uri: str | None = None, extra_params: _Args | None = None
    ) -> str:
        extra: _Args = {}
        # 1.0a moved the callback into the signed request-token call (RFC 5849 section 2.1);
        # plain 1.0 sends nothing but the protocol arguments.
        if self._OAUTH_VERSION == "1.0a":
            if callback_uri:
                extra["oauth_callback"] = (
                    callback_uri if callback_uri == "oob" else self._absolute_url(callback_uri)
                )
            extra.update(extra_params or {})
        return self._signed_url(self._OAUTH_REQUEST_TOKEN_URL, extra)

    def _on_request_token(
        self, authorize_url: str, callback_uri: str | None, response: httpclient.HTTPResponse
    ) -> None:
        handler = _handler(self)
        request_token = _oauth_parse_response(response.body)
        handler.set_cookie(_REQUEST_TOKEN_COOKIE, _pack_request_token(request_token))
        query = {"oauth_token": request_token["key"]}
        if callback_uri and callback_uri != "oob":
            query["oauth_callback"] = self._absolute_url(callback_uri)
        page = authorize_url + "?" + urllib.parse.urlencode(query)
        if callback_uri == "oob":
            # Out of band: the user copies the verifier by hand, so show the link instead.
            handler.finish(page)
        else:
            handler.redirect(page)

    def _oauth_access_token_url(self, request_token: _Args) -> str:
        verifier = request_token.get("verifier")
        extra = {} if verifier is None else {"oauth_verifier": verifier}
        return self._signed_url(self._OAUTH_ACCESS_TOKEN_URL, extra, request_token)

    def _oauth_consumer_token(self) -> _Args:
        """The application's consumer ``key`` and ``secret``; subclasses provide it."""
        raise NotImplementedError(f"{type(self).__name__} must define _oauth_consumer_token")

    async def _oauth_get_user_future(self, access_token: _Args) -> _Args:
        """The user the access token belongs to; subclasses ask their provider."""
        raise NotImplementedError(f"{type(self).__name__} must define _oauth_get_user_future")

    def _oauth_request_parameters(
        self, url: str, access_token: _Args,
        parameters: _Args = {},  # noqa: B006
        method: str = "GET",
    ) -> _Args:
        """The signed ``oauth_*`` arguments for a call to ``url`` on the user's behalf."""
        return self._protocol_arguments(method, url, parameters, access_token)

    def get_auth_http_client(self) -> _Client:
        """The client used to talk to the provider; override to use another one."""
        return httpclient.AsyncHTTPClient()

    def _absolute_url(self, uri: str) -> str:
        return urllib.parse.urljoin(_handler(self).request.full_url(), uri)

    def _signed_url(self, url: str, extra: _Args, token: _Args | None = None) -> str:
        """``url`` with ``extra`` and the signed protocol arguments as its query."""
        query = {**self._protocol_arguments("GET", url, extra, token), **extra}
        return url + "?" + urllib.parse.urlencode(query)

    def _protocol_arguments(
        self, method: str, url: str, others: _Args, token: _Args | None
    ) -> _Args:
        """The ``oauth_*`` arguments of one request (RFC 5849 section 3.1), signed over
        themselves and the request's ``others`` (which win a name clash)."""
        consumer = self._oauth_consumer_token()
        protocol: _Args = {
            "oauth_consumer_key": escape.to_basestring(consumer["key"]),
            "oauth_nonce": uuid.uuid4().hex,
            "oauth_signature_method": "HMAC-SHA1",
            "oauth_timestamp": str(int(time.time())),
            "oauth_version": "1.0",
        }
        if token is not None:
            protocol["oauth_token"] = escape.to_basestring(token["key"])
        # 1.0a percent-encodes the secrets in the signing key; 1.0 joined them as they were.
        sign = _oauth10a_signature if self._OAUTH_VERSION == "1.0a" else _oauth_signature
        signature = sign(consumer, method, url, {**protocol, **others}, token)
        protocol["oauth_signature"] = escape.to_basestring(signature)
        return protocol


class OAuth2Mixin:
    """OAuth 2.0 (RFC 6749) authorization-code flow. Set ``_OAUTH_AUTHORIZE_URL`` and
    ``_OAUTH_ACCESS_TOKEN_URL``."""

    _OAUTH_AUTHORIZE_URL: str
    _OAUTH_ACCESS_TOKEN_URL: str
    # Read by nothing in OAuth 2 (redirect_uri plays that part); kept for code that looks.
    _OAUTH_NO_CALLBACKS = False

    def authorize_redirect(
        self, redirect_uri: str | None = None, client_id: str | None = None,
        client_secret: str | None = None, extra_params: _Args | None = None,
        scope: list[str] | None = None, response_type: str = "code",
    ) -> None:
        """Redirects to the provider's consent page; it comes back with a ``code``."""
        # The secret never travels through the browser (RFC 6749 section 4.1.1).
        query = _present(
            response_type=response_type, redirect_uri=redirect_uri, client_id=client_id
        )
        query.update(extra_params or {})
        if scope:
            query["scope"] = " ".join(scope)
        _handler(self).redirect(url_concat(self._OAUTH_AUTHORIZE_URL, query))

    def _oauth_request_token_url(
        self, redirect_uri: str | None = None, client_id: str | None = None,
        client_secret: str | None = None, code: str | None = None,
        extra_params: _Args | None = None,
    ) -> str:
        query = _code_exchange(code, redirect_uri, client_id, client_secret)
        query.update(extra_params or {})
        return url_concat(self._OAUTH_ACCESS_TOKEN_URL, query)

    async def oauth2_request(
        self, url: str, access_token: str | None = None, post_args: _Args | None = None,
        **args: Any,
    ) -> Any:
        """Calls a provider API with the user's token; returns the decoded JSON answer."""
        query = {"access_token": access_token} if access_token else {}
        query.update(args)
        return await _fetch_json(self.get_auth_http_client(), url, query, post_args)

    def get_auth_http_client(self) -> _Client:
        """The client used to talk to the provider; override to use another one."""
        return httpclient.AsyncHTTPClient()


def _code_exchange(
    code: str | None, redirect_uri: str | None, client_id: str | None, client_secret: str | None
) -> _Args:
    """The arguments that trade an authorization code for a token (RFC 6749 4.1.3)."""
    return _present(
        redirect_uri=redirect_uri, code=code, client_id=client_id, client_secret=client_secret
    )


# Endpoints as the providers publish them (the attribute names are Tornado's documented API).
_TWITTER = "https://api.twitter.com"
_FACEBOOK_GRAPH = "https://graph.facebook.com"


class TwitterMixin(OAuthMixin):
    """Sign in with Twitter (OAuth 1.0a). Needs the ``twitter_consumer_key`` and
    ``twitter_consumer_secret`` application settings."""

    _OAUTH_REQUEST_TOKEN_URL = _TWITTER + "/oauth/request_token"
    _OAUTH_ACCESS_TOKEN_URL = _TWITTER + "/oauth/access_token"
    _OAUTH_AUTHORIZE_URL = _TWITTER + "/oauth/authorize"
    # Like authorize, but a user who already allowed the application goes straight back.
    _OAUTH_AUTHENTICATE_URL = _TWITTER + "/oauth/authenticate"
    _TWITTER_BASE_URL = _TWITTER + "/1.1"

    async def authenticate_redirect(self, callback_uri: str | None = None) -> None:
        """Like ``authorize_redirect``, but skips the consent page for returning users."""
        # The callback travels in the request token only, never on the authenticate page.
        await self._send_to_provider(self._OAUTH_AUTHENTICATE_URL, callback_uri, None, None, None)

    async def twitter_request(
        self, path: str, access_token: _Args, post_args: _Args | None = None, **args: Any
    ) -> Any:
        """Calls the Twitter API (``path`` such as ``/statuses/update``), signed for the user."""
        absolute = path.startswith(("http:", "https:"))
        url = path if absolute else f"{self._TWITTER_BASE_URL}{path}.json"
        if access_token:
            # The signature covers the query and the form body alike (RFC 5849 3.4.1.3).
            method = "GET" if post_args is None else "POST"
            signed = {**args, **(post_args or {})}
            args.update(self._oauth_request_parameters(url, access_token, signed, method=method))
        return await _fetch_json(self.get_auth_http_client(), url, args, post_args)

    def _oauth_consumer_token(self) -> _Args:
        handler = _handler(self)
        token = {}
        for part in ("key", "secret"):
            setting = "twitter_consumer_" + part
            handler.require_setting(setting, "Twitter OAuth")
            token[part] = handler.settings[setting]
        return token

    async def _oauth_get_user_future(self, access_token: _Args) -> _Args:
        user = await self.twitter_request("/account/verify_credentials", access_token=access_token)
        if user:
            user["username"] = user["screen_name"]
        return cast(_Args, user)


class GoogleOAuth2Mixin(OAuth2Mixin):
    """Sign in with Google (OAuth 2.0). Reads ``key`` and ``secret`` from the
    ``google_oauth`` application setting."""

    _OAUTH_SETTINGS_KEY = "google_oauth"
    _OAUTH_AUTHORIZE_URL = "https://accounts.google.com/o/oauth2/v2/auth"
    _OAUTH_ACCESS_TOKEN_URL = "https://www.googleapis.com/oauth2/v4/token"
    _OAUTH_USERINFO_URL = "https://www.googleapis.com/oauth2/v1/userinfo"

    def get_google_oauth_settings(self) -> _Args:
        """The ``google_oauth`` setting; override to keep the credentials elsewhere."""
        return cast(_Args, _handler(self).settings[self._OAUTH_SETTINGS_KEY])

    async def get_authenticated_user(
        self, redirect_uri: str, code: str,
        client_id: str | None = None, client_secret: str | None = None,
    ) -> _Args:
        """Trades the ``code`` for tokens; returns Google's token answer (``access_token``...)."""
        if client_id is None or client_secret is None:
            settings = self.get_google_oauth_settings()
            client_id = settings["key"] if client_id is None else client_id
            client_secret = settings["secret"] if client_secret is None else client_secret
        # Google takes the exchange as a form POST, not as a query.
        form = _code_exchange(code, redirect_uri, client_id, client_secret)
        form["grant_type"] = "authorization_code"
        response = await self.get_auth_http_client().fetch(
            self._OAUTH_ACCESS_TOKEN_URL,
            method="POST",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            body=urllib.parse.urlencode(form),
        )
        return cast(_Args, escape.json_decode(response.body))


class FacebookGraphMixin(OAuth2Mixin):
    """Sign in with Facebook and call its Graph API (OAuth 2.0)."""

    _FACEBOOK_BASE_URL = _FACEBOOK_GRAPH
    _OAUTH_AUTHORIZE_URL = "https://www.facebook.com/dialog/oauth"
    _OAUTH_ACCESS_TOKEN_URL = _FACEBOOK_GRAPH + "/oauth/access_token"

    async def get_authenticated_user(
        self, redirect_uri: str, client_id: str, client_secret: str, code: str,
        extra_fields: _Args | None = None,
    ) -> _Args | None:
        """Trades the ``code`` for a token and returns the user's profile fields, with
        ``access_token`` and ``session_expires``."""
        client = self.get_auth_http_client()
        token_url = self._oauth_request_token_url(
            redirect_uri=redirect_uri, client_id=client_id, client_secret=client_secret, code=code
        )
        answer = escape.json_decode((await client.fetch(token_url)).body)
        access_token = answer.get("access_token")
        if access_token is None:
            raise AuthError(f"Facebook gave no access token: {answer!r}")
        fields = {"id", "name", "first_name", "last_name", "locale", "picture", "link"}
        if extra_fields:
            fields.update(extra_fields)
        # appsecret_proof ties the call to this app's secret, as Facebook recommends
        proof = hmac.new(
            client_secret.encode("utf-8"), access_token.encode("utf-8"), hashlib.sha256
        ).hexdigest()
        user = await self.facebook_request(
            path="/me",
            client_id=client_id,
            access_token=access_token,
            appsecret_proof=proof,
            fields=",".join(sorted(fields)),
        )
        if user is None:
            return None
        profile = {field: user.get(field) for field in fields}
        profile["access_token"] = access_token
        profile["session_expires"] = str(answer.get("expires_in"))
        return profile

    async def facebook_request(
        self, path: str, access_token: str | None = None, post_args: _Args | None = None,
        **args: Any,
    ) -> Any:
        """Calls the Graph API at ``path`` (such as ``/me/feed``)."""
        return await self.oauth2_request(
            self._FACEBOOK_BASE_URL + path, access_token=access_token, post_args=post_args, **args
        )


async def _fetch_json(
    client: httpclient.AsyncHTTPClient,
    url: str,
    query: dict[str, Any],
    post_args: dict[str, Any] | None,
) -> Any:
    """GETs ``url`` with ``query`` (or POSTs ``post_args`` form-encoded); decodes the JSON."""
    if query:
        url += "?" + urllib.parse.urlencode(query)
    if post_args is not None:
        response = await client.fetch(url, method="POST", body=urllib.parse.urlencode(post_args))
    else:
        response = await client.fetch(url)
    return escape.json_decode(response.body)


def _percent_encode(value: str | bytes) -> str:
    # RFC 5849 section 3.6: only unreserved characters stay as they are
    return urllib.parse.quote(escape.utf8(value), safe="~")


def _signature_base_string(method: str, url: str, parameters: dict[str, Any]) -> str:
    scheme, netloc, path = urllib.parse.urlparse(url)[:3]
    normalized_url = scheme.lower() + "://" + netloc.lower() + path
    pairs = sorted(
        (
            _percent_encode(str(name)),
            _percent_encode(
                escape.to_basestring(value) if isinstance(value, bytes) else str(value)
            ),
        )
        for name, value in parameters.items()
    )
    normalized_parameters = "&".join(f"{name}={value}" for name, value in pairs)
    return "&".join(
        _percent_encode(part) for part in (method.upper(), normalized_url, normalized_parameters)
    )


def _hmac_sha1(key: bytes, text: str) -> bytes:
    digest = hmac.new(key, escape.utf8(text), hashlib.sha1).digest()
    return base64.b64encode(digest)


def _oauth_signature(
    consumer_token: dict[str, Any],
    method: str,
    url: str,
    parameters: dict[str, Any] = {},  # noqa: B006
    token: dict[str, Any] | None = None,
) -> bytes:
    """OAuth 1.0 HMAC-SHA1 signature: the key's secrets are joined unescaped."""
    key = (
        escape.utf8(consumer_token["secret"]) + b"&" + escape.utf8(token["secret"] if token else "")
    )
    return _hmac_sha1(key, _signature_base_string(method, url, parameters))


def _oauth10a_signature(
    consumer_token: dict[str, Any],
    method: str,
    url: str,
    parameters: dict[str, Any] = {},  # noqa: B006
    token: dict[str, Any] | None = None,
) -> bytes:
    """OAuth 1.0a (RFC 5849) HMAC-SHA1 signature: the key's secrets are percent-encoded."""
    key = (
        _percent_encode(consumer_token["secret"])
        + "&"
        + _percent_encode(token["secret"] if token else "")
    )
    return _hmac_sha1(escape.utf8(key), _signature_base_string(method, url, parameters))


def _oauth_parse_response(body: bytes) -> dict[str, Any]:
    """A token endpoint's form-encoded answer: ``key`` and ``secret`` plus any extra fields."""
    fields = urllib.parse.parse_qs(escape.native_str(body), keep_blank_values=False)
    try:
        token = {"key": fields["oauth_token"][0], "secret": fields["oauth_token_secret"][0]}
    except KeyError:
        raise AuthError(f"The provider's answer has no token: {body!r}") from None
    for name, values in fields.items():
        if name not in ("oauth_token", "oauth_token_secret"):
            token[name] = values[0]
    return token
