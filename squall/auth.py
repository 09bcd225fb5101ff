"""Third-party sign-in for request handlers: OpenID 2.0, OAuth 1.0a, OAuth 2.0, Google,
Facebook and Twitter.

Each mixin goes on a ``RequestHandler``: one method sends the user to the provider, another,
on the way back, checks what the provider says and returns the user as a dict. Provider
endpoints are class attributes (``_OAUTH_AUTHORIZE_URL`` ...) so tests and private deployments
can point them elsewhere.
"""

from __future__ import annotations

import base64
import binascii
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
        self,
        callback_uri: str | None = None,
        extra_params: dict[str, Any] | None = None,
        http_client: httpclient.AsyncHTTPClient | None = None,
    ) -> None:
        """Gets a request token, keeps it in a cookie and redirects to the provider."""
        if callback_uri and self._OAUTH_NO_CALLBACKS:
            raise Exception("This service does not support oauth_callback")
        client = http_client or self.get_auth_http_client()
        if self._OAUTH_VERSION == "1.0a":
            url = self._oauth_request_token_url(
                callback_uri=callback_uri, extra_params=extra_params
            )
        else:
            url = self._oauth_request_token_url()
        response = await client.fetch(url)
        self._on_request_token(self._OAUTH_AUTHORIZE_URL, callback_uri, response)

    async def get_authenticated_user(
        self, http_client: httpclient.AsyncHTTPClient | None = None
    ) -> dict[str, Any]:
        """On the way back: trades the request token for an access token, returns the user
        with that token under ``access_token``."""
        handler = _handler(self)
        request_key = escape.utf8(handler.get_argument("oauth_token") or "")
        verifier = handler.get_argument("oauth_verifier", None)
        cookie = handler.get_cookie("_oauth_request_token")
        if not cookie:
            raise AuthError("Missing OAuth request token cookie")
        handler.clear_cookie("_oauth_request_token")
        try:
            cookie_key, cookie_secret = (
                base64.b64decode(escape.utf8(part)) for part in cookie.split("|")
            )
        except (ValueError, binascii.Error):
            raise AuthError("Malformed OAuth request token cookie") from None
        if not hmac.compare_digest(cookie_key, request_key):
            raise AuthError("Request token does not match cookie")
        token: dict[str, Any] = {"key": cookie_key, "secret": cookie_secret}
        if verifier:
            token["verifier"] = verifier
        client = http_client or self.get_auth_http_client()
        response = await client.fetch(self._oauth_access_token_url(token))
        access_token = _oauth_parse_response(response.body)
        user = await self._oauth_get_user_future(access_token)
        if not user:
            raise AuthError("Error getting user")
        user["access_token"] = access_token
        return user

    def _oauth_request_token_url(
        self, callback_uri: str | None = None, extra_params: dict[str, Any] | None = None
    ) -> str:
        handler = _handler(self)
        consumer = self._oauth_consumer_token()
        url = self._OAUTH_REQUEST_TOKEN_URL
        arguments = self._oauth_base_arguments(consumer)
        if self._OAUTH_VERSION == "1.0a":
            if callback_uri == "oob":
                arguments["oauth_callback"] = "oob"
            elif callback_uri:
                arguments["oauth_callback"] = urllib.parse.urljoin(
                    handler.request.full_url(), callback_uri
                )
            if extra_params:
                arguments.update(extra_params)
        arguments["oauth_signature"] = self._sign(consumer, "GET", url, arguments)
        return url + "?" + urllib.parse.urlencode(arguments)

    def _on_request_token(
        self,
        authorize_url: str,
        callback_uri: str | None,
        response: httpclient.HTTPResponse,
    ) -> None:
        handler = _handler(self)
        request_token = _oauth_parse_response(response.body)
        cookie = (
            base64.b64encode(escape.utf8(request_token["key"]))
            + b"|"
            + base64.b64encode(escape.utf8(request_token["secret"]))
        )
        handler.set_cookie("_oauth_request_token", cookie)
        arguments = {"oauth_token": request_token["key"]}
        if callback_uri == "oob":
            # out of band: the user copies the verifier by hand, so just show the link
            handler.finish(authorize_url + "?" + urllib.parse.urlencode(arguments))
            return
        if callback_uri:
            arguments["oauth_callback"] = urllib.parse.urljoin(
                handler.request.full_url(), callback_uri
            )
        handler.redirect(authorize_url + "?" + urllib.parse.urlencode(arguments))

    def _oauth_access_token_url(self, request_token: dict[str, Any]) -> str:
        consumer = self._oauth_consumer_token()
        url = self._OAUTH_ACCESS_TOKEN_URL
        arguments = self._oauth_base_arguments(consumer)
        arguments["oauth_token"] = escape.to_basestring(request_token["key"])
        if "verifier" in request_token:
            arguments["oauth_verifier"] = request_token["verifier"]
        arguments["oauth_signature"] = self._sign(consumer, "GET", url, arguments, request_token)
        return url + "?" + urllib.parse.urlencode(arguments)

    def _oauth_consumer_token(self) -> dict[str, Any]:
        """The application's consumer ``key`` and ``secret``; subclasses provide it."""
        raise NotImplementedError(f"{type(self).__name__} must define _oauth_consumer_token")

    async def _oauth_get_user_future(self, access_token: dict[str, Any]) -> dict[str, Any]:
        """The user the access token belongs to; subclasses ask their provider."""
        raise NotImplementedError(f"{type(self).__name__} must define _oauth_get_user_future")

    def _oauth_request_parameters(
        self,
        url: str,
        access_token: dict[str, Any],
        parameters: dict[str, Any] = {},  # noqa: B006
        method: str = "GET",
    ) -> dict[str, Any]:
        """The signed ``oauth_*`` arguments for a call to ``url`` on the user's behalf."""
        consumer = self._oauth_consumer_token()
        oauth_arguments = self._oauth_base_arguments(consumer)
        oauth_arguments["oauth_token"] = escape.to_basestring(access_token["key"])
        signed = {**oauth_arguments, **parameters}
        oauth_arguments["oauth_signature"] = self._sign(consumer, method, url, signed, access_token)
        return oauth_arguments

    def get_auth_http_client(self) -> httpclient.AsyncHTTPClient:
        """The client used to talk to the provider; override to use another one."""
        return httpclient.AsyncHTTPClient()

    def _oauth_base_arguments(self, consumer: dict[str, Any]) -> dict[str, Any]:
        return {
            "oauth_consumer_key": escape.to_basestring(consumer["key"]),
            "oauth_signature_method": "HMAC-SHA1",
            "oauth_timestamp": str(int(time.time())),
            "oauth_nonce": uuid.uuid4().hex,
            "oauth_version": "1.0",
        }

    def _sign(
        self,
        consumer: dict[str, Any],
        method: str,
        url: str,
        arguments: dict[str, Any],
        token: dict[str, Any] | None = None,
    ) -> str:
        if self._OAUTH_VERSION == "1.0a":
            return escape.to_basestring(
                _oauth10a_signature(consumer, method, url, arguments, token)
            )
        return escape.to_basestring(_oauth_signature(consumer, method, url, arguments, token))


class OAuth2Mixin:
    """OAuth 2.0 (RFC 6749) authorization-code flow. Set ``_OAUTH_AUTHORIZE_URL`` and
    ``_OAUTH_ACCESS_TOKEN_URL``."""

    _OAUTH_AUTHORIZE_URL: str
    _OAUTH_ACCESS_TOKEN_URL: str

    def authorize_redirect(
        self,
        redirect_uri: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        extra_params: dict[str, Any] | None = None,
        scope: list[str] | None = None,
        response_type: str = "code",
    ) -> None:
        """Redirects to the provider's consent page; it comes back with a ``code``."""
        arguments: dict[str, Any] = {"response_type": response_type}
        if redirect_uri is not None:
            arguments["redirect_uri"] = redirect_uri
        if client_id is not None:
            arguments["client_id"] = client_id
        if extra_params:
            arguments.update(extra_params)
        if scope:
            arguments["scope"] = " ".join(scope)
        _handler(self).redirect(url_concat(self._OAUTH_AUTHORIZE_URL, arguments))

    def _oauth_request_token_url(
        self,
        redirect_uri: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        code: str | None = None,
        extra_params: dict[str, Any] | None = None,
    ) -> str:
        arguments: dict[str, Any] = {}
        for name, value in (
            ("redirect_uri", redirect_uri),
            ("code", code),
            ("client_id", client_id),
            ("client_secret", client_secret),
        ):
            if value is not None:
                arguments[name] = value
        if extra_params:
            arguments.update(extra_params)
        return url_concat(self._OAUTH_ACCESS_TOKEN_URL, arguments)

    async def oauth2_request(
        self,
        url: str,
        access_token: str | None = None,
        post_args: dict[str, Any] | None = None,
        **args: Any,
    ) -> Any:
        """Calls a provider API with the user's token; returns the decoded JSON answer."""
        query: dict[str, Any] = {}
        if access_token:
            query["access_token"] = access_token
        query.update(args)
        return await _fetch_json(self.get_auth_http_client(), url, query, post_args)

    def get_auth_http_client(self) -> httpclient.AsyncHTTPClient:
        """The client used to talk to the provider; override to use another one."""
        return httpclient.AsyncHTTPClient()


class TwitterMixin(OAuthMixin):
    """Sign in with Twitter (OAuth 1.0a). Needs the ``twitter_consumer_key`` and
    ``twitter_consumer_secret`` application settings."""

    _OAUTH_REQUEST_TOKEN_URL = "https://api.twitter.com/oauth/request_token"
    _OAUTH_ACCESS_TOKEN_URL = "https://api.twitter.com/oauth/access_token"
    _OAUTH_AUTHORIZE_URL = "https://api.twitter.com/oauth/authorize"
    _OAUTH_AUTHENTICATE_URL = "https://api.twitter.com/oauth/authenticate"
    _OAUTH_NO_CALLBACKS = False
    _TWITTER_BASE_URL = "https://api.twitter.com/1.1"

    async def authenticate_redirect(self, callback_uri: str | None = None) -> None:
        """Like ``authorize_redirect``, but skips the consent page for returning users."""
        client = self.get_auth_http_client()
        response = await client.fetch(self._oauth_request_token_url(callback_uri=callback_uri))
        self._on_request_token(self._OAUTH_AUTHENTICATE_URL, None, response)

    async def twitter_request(
        self,
        path: str,
        access_token: dict[str, Any],
        post_args: dict[str, Any] | None = None,
        **args: Any,
    ) -> Any:
        """Calls the Twitter API (``path`` such as ``/statuses/update``), signed for the user."""
        if path.startswith(("http:", "https:")):
            url = path
        else:
            url = self._TWITTER_BASE_URL + path + ".json"
        if access_token:
            signed = {**args, **(post_args or {})}
            method = "POST" if post_args is not None else "GET"
            args.update(self._oauth_request_parameters(url, access_token, signed, method=method))
        return await _fetch_json(self.get_auth_http_client(), url, args, post_args)

    def _oauth_consumer_token(self) -> dict[str, Any]:
        handler = _handler(self)
        handler.require_setting("twitter_consumer_key", "Twitter OAuth")
        handler.require_setting("twitter_consumer_secret", "Twitter OAuth")
        return {
            "key": handler.settings["twitter_consumer_key"],
            "secret": handler.settings["twitter_consumer_secret"],
        }

    async def _oauth_get_user_future(self, access_token: dict[str, Any]) -> dict[str, Any]:
        user = await self.twitter_request("/account/verify_credentials", access_token=access_token)
        if user:
            user["username"] = user["screen_name"]
        return cast(dict[str, Any], user)


class GoogleOAuth2Mixin(OAuth2Mixin):
    """Sign in with Google (OAuth 2.0). Reads ``key`` and ``secret`` from the
    ``google_oauth`` application setting."""

    _OAUTH_AUTHORIZE_URL = "https://accounts.google.com/o/oauth2/v2/auth"
    _OAUTH_ACCESS_TOKEN_URL = "https://www.googleapis.com/oauth2/v4/token"
    _OAUTH_USERINFO_URL = "https://www.googleapis.com/oauth2/v1/userinfo"
    _OAUTH_NO_CALLBACKS = False
    _OAUTH_SETTINGS_KEY = "google_oauth"

    def get_google_oauth_settings(self) -> dict[str, Any]:
        """The ``google_oauth`` setting; override to keep the credentials elsewhere."""
        return cast(dict[str, Any], _handler(self).settings[self._OAUTH_SETTINGS_KEY])

    async def get_authenticated_user(
        self,
        redirect_uri: str,
        code: str,
        client_id: str | None = None,
        client_secret: str | None = None,
    ) -> dict[str, Any]:
        """Trades the ``code`` for tokens; returns Google's token answer (``access_token``...)."""
        if client_id is None or client_secret is None:
            settings = self.get_google_oauth_settings()
            client_id = client_id if client_id is not None else settings["key"]
            client_secret = client_secret if client_secret is not None else settings["secret"]
        body = urllib.parse.urlencode(
            {
                "redirect_uri": redirect_uri,
                "code": code,
                "client_id": client_id,
                "client_secret": client_secret,
                "grant_type": "authorization_code",
            }
        )
        response = await self.get_auth_http_client().fetch(
            self._OAUTH_ACCESS_TOKEN_URL,
            method="POST",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            body=body,
        )
        return cast(dict[str, Any], escape.json_decode(response.body))


class FacebookGraphMixin(OAuth2Mixin):
    """Sign in with Facebook and call its Graph API (OAuth 2.0)."""

    _OAUTH_ACCESS_TOKEN_URL = "https://graph.facebook.com/oauth/access_token"
    _OAUTH_AUTHORIZE_URL = "https://www.facebook.com/dialog/oauth"
    _OAUTH_NO_CALLBACKS = False
    _FACEBOOK_BASE_URL = "https://graph.facebook.com"

    async def get_authenticated_user(
        self,
        redirect_uri: str,
        client_id: str,
        client_secret: str,
        code: str,
        extra_fields: dict[str, Any] | None = None,
    ) -> dict[str, Any] | None:
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
        self,
        path: str,
        access_token: str | None = None,
        post_args: dict[str, Any] | None = None,
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
