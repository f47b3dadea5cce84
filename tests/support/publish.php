<?php
// What tests/system/test_php_publisher.py runs with php-cli: one publication through
// clients/php/src/Publisher.php, its outcome printed as JSON on stdout.
//
//   php publish.php URL SECRET CASE
//
// CASE: "good", "old" (a timestamp an hour ago), "topic" (a topic the endpoint refuses),
// "big" (a body over the endpoint's limit), "marker" (a last good one).

declare(strict_types=1);

require __DIR__ . '/../../clients/php/src/Publisher.php';

use Ratchetpy\Publisher;
use Ratchetpy\PublishRefused;
use Ratchetpy\PublishError;

[, $url, $secret, $case] = $argv;
$clock = $case === 'old' ? static fn (): int => time() - 3600 : null;
$publisher = new Publisher($url, $secret, 5.0, $clock);
try {
    $answer = match ($case) {
        'good' => $publisher->publish('com.example.news', ['hello', 42], ['by' => 'php', 'ok' => true]),
        'topic' => $publisher->publish('org.elsewhere.news', ['not for you']),
        'big' => $publisher->publish('com.example.news', [str_repeat('x', 4096)]),
        'marker' => $publisher->publish('com.example.news', ['marker']),
        default => $publisher->publish('com.example.news', [$case]),
    };
    echo json_encode(['published' => $answer]), "\n";
} catch (PublishRefused $refused) {
    echo json_encode([
        'refused' => $refused->status,
        'error' => $refused->error,
        'reason' => $refused->reason,
        'message' => $refused->getMessage(),
    ]), "\n";
} catch (PublishError $error) {
    echo json_encode(['failed' => get_class($error), 'message' => $error->getMessage()]), "\n";
}
