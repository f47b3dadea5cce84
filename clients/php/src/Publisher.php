<?php
/**
 * Publish to ratchetpy's WAMP subscribers from PHP: a signed POST to its PublishEndpoint.
 *
 *     $publisher = new \Ratchetpy\Publisher('http://127.0.0.1:8080/publish', getenv('PUBLISH_SECRET'));
 *     $answer = $publisher->publish('com.example.record.42', ['saved'], ['by' => 'ann']);
 *     // ['id' => 4528514056547142, 'receivers' => 3]
 *
 * Each request is signed as the endpoint expects (docs/reference/publish.md, "Signing"):
 * HMAC-SHA256 of "<timestamp>.<body>" with the shared secret, in the X-Ratchetpy-Timestamp and
 * X-Ratchetpy-Signature headers; a random nonce makes every publication a request of its own.
 * Every refusal raises PublishRefused (HTTP status, the endpoint's error code and reason); a
 * server that cannot be reached, or answers with something that is not the endpoint's JSON,
 * raises PublishError. Nothing is retried: a retry of an accepted request would be refused as
 * a replay, so a new publish() call is a new publication.
 *
 * PHP 8.1+, with the curl and json extensions; no other dependency.
 */

declare(strict_types=1);

namespace Ratchetpy;

/** The publication did not happen, or whether it did cannot be known (network, server). */
class PublishError extends \RuntimeException
{
}

/** The endpoint refused the publication: nothing was delivered. */
final class PublishRefused extends PublishError
{
    public function __construct(
        /** The HTTP status: 400, 401, 403, 409, 413, 415 or 503. */
        public readonly int $status,
        /** The endpoint's error code: "bad_signature", "topic_not_allowed", "too_large", ... */
        public readonly string $error,
        /** What the endpoint said, for humans. */
        public readonly string $reason,
        /** Seconds to wait before trying again (a 503's Retry-After), or null. */
        public readonly ?int $retryAfter = null,
    ) {
        parent::__construct("publish refused with $status $error: $reason", $status);
    }
}

final class Publisher
{
    /** @var callable(): int */
    private $clock;

    /**
     * @param string $url the endpoint, e.g. "http://127.0.0.1:8080/publish"
     * @param string $secret the shared secret (at least 16 bytes, as the endpoint requires)
     * @param float $timeout seconds for the whole request
     * @param (callable(): int)|null $clock Unix time in whole seconds (tests pass their own)
     */
    public function __construct(
        private readonly string $url,
        #[\SensitiveParameter] private readonly string $secret,
        private readonly float $timeout = 5.0,
        ?callable $clock = null,
    ) {
        if (strlen($secret) < 16) {
            throw new \InvalidArgumentException('the publish secret must be at least 16 bytes long');
        }
        if (!preg_match('#^https?://#i', $url)) {
            throw new \InvalidArgumentException("not an http:// or https:// URL: $url");
        }
        $this->clock = $clock ?? static fn (): int => time();
    }

    /**
     * Publish an event of $topic to its subscribers; returns ['id' => ..., 'receivers' => ...].
     *
     * @param list<mixed> $args the event's positional arguments
     * @param array<string, mixed> $kwargs the event's keyword arguments
     * @param array<string, list<int|string>> $options exclude, eligible, exclude_authid, eligible_authid
     * @param string|null $realm the realm, if not the endpoint's own
     * @return array{id: int, receivers: int}
     * @throws PublishRefused when the endpoint refused it (nothing delivered)
     * @throws PublishError when it could not be sent or the answer is not the endpoint's
     */
    public function publish(
        string $topic,
        array $args = [],
        array $kwargs = [],
        array $options = [],
        ?string $realm = null,
    ): array {
        $message = ['topic' => $topic, 'nonce' => bin2hex(random_bytes(12))];
        if ($args !== []) {
            $message['args'] = array_values($args);
        }
        if ($kwargs !== []) {
            $message['kwargs'] = (object) $kwargs;
        }
        if ($options !== []) {
            $message['options'] = (object) $options;
        }
        if ($realm !== null) {
            $message['realm'] = $realm;
        }
        try {
            $body = json_encode($message, JSON_THROW_ON_ERROR | JSON_UNESCAPED_SLASHES);
        } catch (\JsonException $e) {
            throw new PublishError('the publication cannot be written as JSON: ' . $e->getMessage(), 0, $e);
        }
        return $this->send($body);
    }

    /** The headers that sign $body now: timestamp and signature. @return list<string> */
    public function sign(string $body): array
    {
        $timestamp = (string) ($this->clock)();
        $signature = hash_hmac('sha256', $timestamp . '.' . $body, $this->secret);
        return ["X-Ratchetpy-Timestamp: $timestamp", "X-Ratchetpy-Signature: sha256=$signature"];
    }

    /** @return array{id: int, receivers: int} */
    private function send(string $body): array
    {
        $curl = curl_init($this->url);
        $retryAfter = null;
        curl_setopt_array($curl, [
            CURLOPT_POST => true,
            CURLOPT_POSTFIELDS => $body,
            CURLOPT_HTTPHEADER => ['Content-Type: application/json', 'Expect:', ...$this->sign($body)],
            CURLOPT_RETURNTRANSFER => true,
            CURLOPT_TIMEOUT_MS => (int) ($this->timeout * 1000),
            CURLOPT_FOLLOWLOCATION => false,
            CURLOPT_HEADERFUNCTION => static function ($curl, string $line) use (&$retryAfter): int {
                if (preg_match('/^Retry-After:\s*(\d+)/i', $line, $found)) {
                    $retryAfter = (int) $found[1];
                }
                return strlen($line);
            },
        ]);
        $answer = curl_exec($curl);
        $status = (int) curl_getinfo($curl, CURLINFO_RESPONSE_CODE);
        $problem = curl_error($curl);
        curl_close($curl);
        if ($answer === false) {
            throw new PublishError("the publish endpoint at {$this->url} could not be reached: $problem");
        }
        $decoded = json_decode((string) $answer, true);
        if ($status === 200 && is_array($decoded) && is_int($decoded['id'] ?? null)
            && is_int($decoded['receivers'] ?? null)) {
            return ['id' => $decoded['id'], 'receivers' => $decoded['receivers']];
        }
        if ($status >= 400 && is_array($decoded) && is_string($decoded['error'] ?? null)) {
            throw new PublishRefused($status, $decoded['error'], (string) ($decoded['reason'] ?? ''), $retryAfter);
        }
        // Not the endpoint's own answer: a proxy's error page, a router's 405 or 404.
        $text = substr(trim((string) $answer), 0, 200);
        throw new PublishError("the publish endpoint at {$this->url} answered $status: $text");
    }
}
