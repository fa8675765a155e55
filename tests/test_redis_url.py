"""Redis URLs (``redis.url``): the accepted forms, the masked form for logs,
and the start-up error for a URL that cannot be used (no Redis needed)."""

from twisted.trial.unittest import SynchronousTestCase as TestCase

from ahtwist.backends.redis_url import mask_url, parse_redis_url
from ahtwist.errors import ConfigError
from tests.helpers import config_from


class RedisURLTests(TestCase):
    """redis:// and rediss:// forms."""

    def test_forms(self):
        target = parse_redis_url("redis://127.0.0.1:6380/2")
        self.assertEqual((target.host, target.port, target.db, target.password, target.tls), ("127.0.0.1", 6380, 2, None, False))
        self.assertEqual(target.masked, "redis://127.0.0.1:6380/2")
        target = parse_redis_url("redis://:p%40ss@redis.example")
        self.assertEqual((target.port, target.db, target.username, target.password), (6379, 0, None, "p@ss"))
        self.assertEqual(target.masked, "redis://:****@redis.example:6379/0")
        target = parse_redis_url("rediss://app:pw@h:6390/1?ssl_ca_certs=/ca.pem&ssl_cert_reqs=none")
        self.assertEqual((target.username, target.password, target.tls, target.ca_certs, target.verify),
                         ("app", "pw", True, "/ca.pem", False))
        self.assertEqual(target.masked, "rediss://app:****@h:6390/1")

    def test_invalid_urls(self):
        from ahtwist.backends.redis_url import RedisURLError

        for url, text in [
            ("http://h", "a Redis URL starts with redis://, rediss:// or redis+sentinel://"),
            ("redis://", "the Redis URL names no host"),
            ("redis://h/x", "the Redis database must be a number, got 'x'"),
            ("redis://h?ssl_ca_certs=/a", "ssl_* options need a rediss:// URL"),
            ("rediss://h?nope=1", "unknown Redis URL option 'nope'"),
            ("rediss://h?ssl_cert_reqs=maybe", "ssl_cert_reqs must be none or required, got 'maybe'"),
            ("redis://h:99999", "invalid Redis URL: Port out of range 0-65535"),
        ]:
            with self.assertRaises(RedisURLError) as e:
                parse_redis_url(url)
            self.assertEqual(str(e.exception), text)

    def test_sentinel_forms(self):
        target = parse_redis_url("redis+sentinel://:pw@10.0.0.1,10.0.0.2:26380,[::1]:5/mymaster/3"
                                 "?sentinel_password=s%40")
        self.assertEqual(
            (target.sentinels, target.master_name, target.db, target.password, target.sentinel_password),
            ((("10.0.0.1", 26379), ("10.0.0.2", 26380), ("::1", 5)), "mymaster", 3, "pw", "s@"),
        )
        self.assertEqual(target.masked, "redis+sentinel://:****@10.0.0.1:26379,10.0.0.2:26380,[::1]:5/mymaster/3")
        target = parse_redis_url("redis+sentinel://app:pw@s1/m")
        self.assertEqual((target.sentinels, target.master_name, target.db, target.username),
                         ((("s1", 26379),), "m", 0, "app"))
        self.assertEqual(mask_url("redis+sentinel://:topsecret@h/m?sentinel_password=x"),
                         "redis+sentinel://:****@h:26379/m/0")
        from ahtwist.backends.redis_url import RedisURLError

        for url, text in [
            ("redis+sentinel://h", "a redis+sentinel:// URL names the master: redis+sentinel://host:26379/mymaster"),
            ("redis+sentinel://h/m/x", "the Redis database must be a number, got 'x'"),
            ("redis+sentinel://h,/m", "the Redis URL names no Sentinel host"),
            ("redis+sentinel://h/m?ssl_cert_reqs=none", "unknown Redis URL option 'ssl_cert_reqs'"),
            ("redis+sentinel://h:70000/m", "invalid Redis URL: Port out of range 0-65535"),
        ]:
            with self.assertRaises(RedisURLError) as e:
                parse_redis_url(url)
            self.assertEqual(str(e.exception), text)

    def test_mask_never_shows_a_password(self):
        self.assertEqual(mask_url("rediss://:topsecret@h:1/0?ssl_cert_reqs=none"), "rediss://:****@h:1/0")
        self.assertEqual(mask_url("nonsense://:topsecret@h"), "<invalid Redis URL>")

    def test_an_unusable_url_stops_start_up_naming_the_key(self):
        with self.assertRaises(ConfigError) as e:
            config_from('[redis]\nurl = "http://127.0.0.1:6379"\n')
        self.assertEqual(str(e.exception), "redis.url: a Redis URL starts with redis://, rediss:// or redis+sentinel://")
        with self.assertRaises(ConfigError) as e:
            config_from("", redis="redis://h/zero")
        self.assertEqual(str(e.exception), "redis.url: the Redis database must be a number, got 'zero'")
        self.assertEqual(config_from("", redis="redis://h:7/1").redis.url, "redis://h:7/1")
