"""squall.auth against fake providers served on 127.0.0.1."""

from __future__ import annotations

import base64
import json
import urllib.parse
from typing import Any

from squall.auth import (
    AuthError,
    FacebookGraphMixin,
    GoogleOAuth2Mixin,
    OAuthMixin,
    OpenIdMixin,
    TwitterMixin,
    _oauth10a_signature,
)
from squall.testing import AsyncHTTPTestCase
from squall.web import Application, RequestHandler

REQUEST_TOKEN_COOKIE = (
    "_oauth_request_token="
    + base64.b64encode(b"reqkey").decode()
    + "|"
    + base64.b64encode(b"reqsecret").decode()
)


def test_oauth10a_signature_matches_rfc5849_example() -> None:
    # RFC 5849 section 1.2: the photo-printing example with its published signature
    parameters = {
        "oauth_consumer_key": "dpf43f3p2l4k3l03",
        "oauth_token": "nnch734d00sl2jdk",
        "oauth_signature_method": "HMAC-SHA1",
        "oauth_timestamp": "1191242096",
        "oauth_nonce": "kllo9940pd9333jh",
        "oauth_version": "1.0",
        "file": "vacation.jpg",
        "size": "original",
    }
    signature = _oauth10a_signature(
        {"key": "dpf43f3p2l4k3l03", "secret": "kd94hf93k423kf44"},
        "GET",
        "http://photos.example.net/photos",
        parameters,
        {"key": "nnch734d00sl2jdk", "secret": "pfkkdhi9sl3r4s00"},
    )
    assert signature == b"tR3+Ty81lMeYAr/Fid0kMTYa/WM="


class ProviderRequestToken(RequestHandler):
    def get(self) -> None:
        self.write("oauth_token=reqkey&oauth_token_secret=reqsecret")


class ProviderAccessToken(RequestHandler):
    def get(self) -> None:
        assert self.get_argument("oauth_token") == "reqkey"
        assert self.get_argument("oauth_verifier") == "v123"
        self.write("oauth_token=acckey&oauth_token_secret=accsecret&screen_name=ada")


class ProviderVerifyCredentials(RequestHandler):
    def get(self) -> None:
        assert self.get_argument("oauth_token") == "acckey"
        assert self.get_argument("oauth_signature_method") == "HMAC-SHA1"
        assert self.get_argument("oauth_consumer_key") == "consumer"
        self.write({"screen_name": "ada", "name": "Ada"})


class TwitterLogin(RequestHandler, TwitterMixin):
    def initialize(self, test: AsyncHTTPTestCase) -> None:
        self._OAUTH_REQUEST_TOKEN_URL = test.get_url("/provider/request_token")
        self._OAUTH_ACCESS_TOKEN_URL = test.get_url("/provider/access_token")
        self._OAUTH_AUTHORIZE_URL = test.get_url("/provider/authorize")
        self._TWITTER_BASE_URL = test.get_url("/provider/api")

    async def get(self) -> None:
        if self.get_argument("oauth_token", None):
            try:
                user = await self.get_authenticated_user()
            except AuthError as error:
                self.set_status(403)
                self.finish(str(error))
                return
            self.finish(user)
            return
        await self.authorize_redirect(callback_uri="/twitter/login")


class OpenIdProvider(RequestHandler):
    def post(self) -> None:
        assert self.get_argument("openid.mode") == "check_authentication"
        valid = self.get_argument("openid.sig", "") == "good"
        self.write("ns:http://specs.openid.net/auth/2.0\nis_valid:%s\n" % str(valid).lower())


class OpenIdLogin(RequestHandler, OpenIdMixin):
    def initialize(self, test: AsyncHTTPTestCase) -> None:
        self._OPENID_ENDPOINT = test.get_url("/openid/provider")

    async def get(self) -> None:
        if self.get_argument("openid.mode", None):
            try:
                self.finish(await self.get_authenticated_user())
            except AuthError:
                self.set_status(403)
                self.finish("refused")
            return
        self.authenticate_redirect()


class GoogleToken(RequestHandler):
    def post(self) -> None:
        assert self.get_argument("grant_type") == "authorization_code"
        assert self.get_argument("client_secret") == "google-secret"
        self.write({"access_token": "g-token", "expires_in": 3599})


class GoogleLogin(RequestHandler, GoogleOAuth2Mixin):
    def initialize(self, test: AsyncHTTPTestCase) -> None:
        self._OAUTH_ACCESS_TOKEN_URL = test.get_url("/google/token")

    async def get(self) -> None:
        code = self.get_argument("code", None)
        if code:
            self.finish(await self.get_authenticated_user("http://app/cb", code))
            return
        self.authorize_redirect(
            redirect_uri="http://app/cb", client_id="google-id", scope=["profile", "email"]
        )


class FacebookToken(RequestHandler):
    def get(self) -> None:
        self.write({"access_token": "fb-token", "expires_in": 60})


class FacebookMe(RequestHandler):
    def get(self) -> None:
        assert self.get_argument("access_token") == "fb-token"
        assert len(self.get_argument("appsecret_proof")) == 64
        self.write({"id": "42", "name": "Grace"})


class FacebookLogin(RequestHandler, FacebookGraphMixin):
    def initialize(self, test: AsyncHTTPTestCase) -> None:
        self._OAUTH_ACCESS_TOKEN_URL = test.get_url("/facebook/token")
        self._FACEBOOK_BASE_URL = test.get_url("/facebook")

    async def get(self) -> None:
        user = await self.get_authenticated_user(
            redirect_uri="http://app/cb", client_id="fb-id", client_secret="fb-secret", code="c"
        )
        self.finish(user)


class AuthFlowsTest(AsyncHTTPTestCase):
    def get_app(self) -> Application:
        test = {"test": self}
        return Application(
            [
                ("/provider/request_token", ProviderRequestToken),
                ("/provider/access_token", ProviderAccessToken),
                ("/provider/api/account/verify_credentials.json", ProviderVerifyCredentials),
                ("/twitter/login", TwitterLogin, test),
                ("/openid/provider", OpenIdProvider),
                ("/openid/login", OpenIdLogin, test),
                ("/google/token", GoogleToken),
                ("/google/login", GoogleLogin, test),
                ("/facebook/token", FacebookToken),
                ("/facebook/me", FacebookMe),
                ("/facebook/login", FacebookLogin, test),
            ],
            twitter_consumer_key="consumer",
            twitter_consumer_secret="consumer-secret",
            google_oauth={"key": "google-id", "secret": "google-secret"},
        )

    def test_oauth1_redirect_keeps_request_token_in_cookie(self) -> None:
        response = self.fetch("/twitter/login", follow_redirects=False)
        self.assertEqual(response.code, 302)
        location = urllib.parse.urlsplit(response.headers["Location"])
        query = urllib.parse.parse_qs(location.query)
        self.assertEqual(location.path, "/provider/authorize")
        self.assertEqual(query["oauth_token"], ["reqkey"])
        self.assertTrue(query["oauth_callback"][0].endswith("/twitter/login"))
        self.assertIn("_oauth_request_token=", response.headers["Set-Cookie"])

    def test_oauth1_callback_returns_user_with_access_token(self) -> None:
        response = self.fetch(
            "/twitter/login?oauth_token=reqkey&oauth_verifier=v123",
            headers={"Cookie": REQUEST_TOKEN_COOKIE},
        )
        self.assertEqual(response.code, 200, response.body)
        user = json.loads(response.body)
        self.assertEqual(user["username"], "ada")
        self.assertEqual(user["access_token"]["key"], "acckey")
        self.assertEqual(user["access_token"]["screen_name"], "ada")

    def test_oauth1_refuses_missing_or_mismatched_cookie(self) -> None:
        response = self.fetch("/twitter/login?oauth_token=reqkey&oauth_verifier=v123")
        self.assertEqual(response.code, 403)
        self.assertIn(b"cookie", response.body)
        response = self.fetch(
            "/twitter/login?oauth_token=otherkey&oauth_verifier=v123",
            headers={"Cookie": REQUEST_TOKEN_COOKIE},
        )
        self.assertEqual(response.code, 403)

    def test_openid_redirect_and_attribute_exchange(self) -> None:
        response = self.fetch("/openid/login", follow_redirects=False)
        self.assertEqual(response.code, 302)
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(response.headers["Location"]).query)
        self.assertEqual(query["openid.mode"], ["checkid_setup"])
        self.assertEqual(query["openid.ns.ax"], ["http://openid.net/srv/ax/1.0"])

        back = urllib.parse.urlencode(
            {
                "openid.mode": "id_res",
                "openid.sig": "good",
                "openid.ns.ext1": "http://openid.net/srv/ax/1.0",
                "openid.ext1.type.mail": "http://axschema.org/contact/email",
                "openid.ext1.value.mail": "ada@example.com",
                "openid.ext1.type.first": "http://axschema.org/namePerson/first",
                "openid.ext1.value.first": "Ada",
                "openid.claimed_id": "https://id.example/ada",
            }
        )
        user = json.loads(self.fetch("/openid/login?" + back).body)
        self.assertEqual(user["email"], "ada@example.com")
        self.assertEqual(user["name"], "Ada")
        self.assertEqual(user["claimed_id"], "https://id.example/ada")

    def test_openid_refuses_what_the_provider_does_not_confirm(self) -> None:
        response = self.fetch("/openid/login?openid.mode=id_res&openid.sig=forged")
        self.assertEqual(response.code, 403)

    def test_google_redirect_and_code_exchange(self) -> None:
        response = self.fetch("/google/login", follow_redirects=False)
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(response.headers["Location"]).query)
        self.assertEqual(query["scope"], ["profile email"])
        self.assertEqual(query["client_id"], ["google-id"])
        self.assertEqual(query["response_type"], ["code"])
        token: dict[str, Any] = json.loads(self.fetch("/google/login?code=abc").body)
        self.assertEqual(token["access_token"], "g-token")

    def test_facebook_profile_with_session(self) -> None:
        user = json.loads(self.fetch("/facebook/login").body)
        self.assertEqual(user["name"], "Grace")
        self.assertEqual(user["access_token"], "fb-token")
        self.assertEqual(user["session_expires"], "60")


class SignatureVersionsTest(AsyncHTTPTestCase):
    def get_app(self) -> Application:
        class Parameters(RequestHandler, OAuthMixin):
            def initialize(self, version: str) -> None:
                self._OAUTH_VERSION = version

            def _oauth_consumer_token(self) -> dict[str, Any]:
                return {"key": "ck", "secret": "cs"}

            def get(self) -> None:
                self.write(
                    self._oauth_request_parameters(
                        "http://api.example/x", {"key": "tk", "secret": "ts"}, {"q": "1"}
                    )
                )

        return Application(
            [
                ("/v1", Parameters, {"version": "1.0"}),
                ("/v1a", Parameters, {"version": "1.0a"}),
            ]
        )

    def test_request_parameters_are_signed(self) -> None:
        for path in ("/v1", "/v1a"):
            parameters = json.loads(self.fetch(path).body)
            self.assertEqual(parameters["oauth_consumer_key"], "ck")
            self.assertEqual(parameters["oauth_token"], "tk")
            self.assertNotIn("q", parameters)
            self.assertEqual(len(base64.b64decode(parameters["oauth_signature"])), 20)


class OutOfBandLogin(RequestHandler, TwitterMixin):
    """Twitter against the fake provider, with the request flow chosen by the query."""

    def initialize(self, test: AsyncHTTPTestCase) -> None:
        self._OAUTH_REQUEST_TOKEN_URL = test.get_url("/provider/request_token")
        self._OAUTH_AUTHORIZE_URL = test.get_url("/provider/authorize")
        self._OAUTH_AUTHENTICATE_URL = test.get_url("/provider/authenticate")

    async def get(self) -> None:
        flow = self.get_argument("flow")
        if flow == "oob":
            await self.authorize_redirect(callback_uri="oob")
        elif flow == "authenticate":
            await self.authenticate_redirect(callback_uri="/back")
        elif flow == "no-callbacks":
            self._OAUTH_NO_CALLBACKS = True
            try:
                await self.authorize_redirect(callback_uri="/back")
            except Exception as error:
                self.finish(str(error))
        else:
            try:
                await self.get_authenticated_user()
            except AuthError as error:
                self.set_status(403)
                self.finish(str(error))


class OAuth1FlowVariantsTest(AsyncHTTPTestCase):
    def get_app(self) -> Application:
        return Application(
            [
                ("/provider/request_token", ProviderRequestToken),
                ("/login", OutOfBandLogin, {"test": self}),
            ],
            twitter_consumer_key="consumer",
            twitter_consumer_secret="consumer-secret",
        )

    def test_out_of_band_shows_the_link_instead_of_redirecting(self) -> None:
        response = self.fetch("/login?flow=oob", follow_redirects=False)
        self.assertEqual(response.code, 200)
        self.assertTrue(response.body.endswith(b"/provider/authorize?oauth_token=reqkey"))
        self.assertIn("_oauth_request_token=", response.headers["Set-Cookie"])

    def test_authenticate_page_gets_no_callback(self) -> None:
        response = self.fetch("/login?flow=authenticate", follow_redirects=False)
        self.assertEqual(response.code, 302)
        self.assertTrue(
            response.headers["Location"].endswith("/provider/authenticate?oauth_token=reqkey")
        )

    def test_services_without_callbacks_refuse_one(self) -> None:
        response = self.fetch("/login?flow=no-callbacks")
        self.assertEqual(response.body, b"This service does not support oauth_callback")

    def test_malformed_request_token_cookie(self) -> None:
        for cookie in ("onlyonehalf", "a|b|c", "x|y"):
            response = self.fetch(
                "/login?flow=back&oauth_token=reqkey",
                headers={"Cookie": "_oauth_request_token=" + cookie},
            )
            self.assertEqual(response.code, 403, cookie)
            self.assertEqual(response.body, b"Malformed OAuth request token cookie")
