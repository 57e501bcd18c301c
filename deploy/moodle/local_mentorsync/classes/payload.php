<?php
// This file is part of the mentorsync Moodle plugin local_mentorsync.
//
// Moodle is free software: you can redistribute it and/or modify
// it under the terms of the GNU General Public License as published by
// the Free Software Foundation, either version 3 of the License, or
// (at your option) any later version.
//
// Moodle is distributed in the hope that it will be useful,
// but WITHOUT ANY WARRANTY; without even the implied warranty of
// MERCHANTABILITY or FITNESS FOR A PARTICULAR PURPOSE.  See the
// GNU General Public License for more details.
//
// You should have received a copy of the GNU General Public License
// along with Moodle.  If not, see <http://www.gnu.org/licenses/>.

namespace local_mentorsync;

/**
 * The signed JSON that mentorsync's webhook takes: one place, no Moodle dependencies.
 *
 * The body is one event object with exactly the keys of {@see self::FIELDS}, in that order, encoded
 * with JSON_UNESCAPED_SLASHES and no whitespace. The headers follow the Standard Webhooks scheme
 * (https://www.standardwebhooks.com/) that mentorsync verifies: webhook-id, webhook-timestamp and
 * webhook-signature "v1,<base64 HMAC-SHA256 of id.timestamp.body>" under the key that the
 * "whsec_<base64>" secret encodes.
 *
 * This class deliberately uses plain PHP only (no Moodle function, no MOODLE_INTERNAL check), so
 * that mentorsync's own test suite can run it with the PHP CLI and compare its bytes with the
 * Python mirror in tests/deploy/moodle_plugin_payload.py. Keep the two in step.
 *
 * @package    local_mentorsync
 * @copyright  2026 mentorsync
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */
final class payload {
    /** @var string[] The keys of a body, in order. Only ids and a time: never names or text. */
    public const FIELDS = ['eventname', 'userid', 'relateduserid', 'courseid', 'contextinstanceid', 'timecreated'];

    /** @var string The prefix of a Standard Webhooks secret. */
    public const SECRET_PREFIX = 'whsec_';

    /** @var int The shortest HMAC key accepted (mentorsync refuses shorter ones too). */
    public const MIN_KEY_BYTES = 16;

    /** @var string An event class name such as \core\event\course_completed. */
    private const EVENT_NAME = '/^\\\\?[A-Za-z0-9_]+(\\\\[A-Za-z0-9_]+){0,8}$/D';

    /**
     * The body's event from Moodle event data (an array such as \core\event\base::get_data()).
     *
     * Keys other than {@see self::FIELDS} are dropped, so "other" (which for user_deleted holds the
     * username and email) can never leave Moodle. Ids come out as integers, missing ones as null.
     *
     * @param array $data Event data, or the copy kept in an adhoc task's custom data.
     * @return array The event, keys in {@see self::FIELDS} order.
     * @throws \InvalidArgumentException When the event name or an id is not what it should be.
     */
    public static function event_from_data(array $data): array {
        $name = $data['eventname'] ?? null;
        if (!is_string($name) || !preg_match(self::EVENT_NAME, $name)) {
            throw new \InvalidArgumentException('eventname must be a Moodle event class name');
        }
        if ($name[0] !== '\\') {
            $name = '\\' . $name;
        }
        $event = ['eventname' => $name];
        foreach (array_slice(self::FIELDS, 1) as $field) {
            $event[$field] = self::whole($data[$field] ?? null, $field);
        }
        // The actor: 0 for cron or CLI, never absent (mentorsync requires the key).
        $event['userid'] = $event['userid'] ?? 0;
        return $event;
    }

    /**
     * The exact bytes of the request body for one event.
     *
     * @param array $event From {@see self::event_from_data()}.
     * @return string Compact JSON.
     */
    public static function body(array $event): string {
        return json_encode($event, JSON_UNESCAPED_SLASHES | JSON_THROW_ON_ERROR);
    }

    /**
     * The HMAC key inside a "whsec_<base64>" secret.
     *
     * @param string $secret The secret as configured (surrounding whitespace is ignored).
     * @return string The raw key bytes.
     * @throws \InvalidArgumentException When the secret is not a usable Standard Webhooks secret.
     */
    public static function decode_secret(string $secret): string {
        $secret = trim($secret);
        if (strpos($secret, self::SECRET_PREFIX) !== 0) {
            throw new \InvalidArgumentException('the secret must start with whsec_');
        }
        $key = base64_decode(substr($secret, strlen(self::SECRET_PREFIX)), true);
        if ($key === false) {
            throw new \InvalidArgumentException('the part of the secret after whsec_ is not base64');
        }
        if (strlen($key) < self::MIN_KEY_BYTES) {
            throw new \InvalidArgumentException('the secret\'s key is shorter than 16 bytes');
        }
        return $key;
    }

    /**
     * The "v1,<base64>" signature of one message.
     *
     * @param string $key Raw key bytes from {@see self::decode_secret()}.
     * @param string $msgid The webhook-id.
     * @param int $timestamp The webhook-timestamp (Unix seconds).
     * @param string $body The exact body bytes.
     * @return string The webhook-signature value.
     */
    public static function sign(string $key, string $msgid, int $timestamp, string $body): string {
        $digest = hash_hmac('sha256', $msgid . '.' . $timestamp . '.' . $body, $key, true);
        return 'v1,' . base64_encode($digest);
    }

    /**
     * The request headers for one delivery, as name => value.
     *
     * @param string $secret The "whsec_..." secret.
     * @param string $msgid The webhook-id: the same on every retry, so mentorsync drops duplicates.
     * @param int $timestamp Now, at delivery (mentorsync refuses a timestamp 5 minutes off).
     * @param string $body The exact body bytes from {@see self::body()}.
     * @return array Header name => value, in sending order.
     */
    public static function headers(string $secret, string $msgid, int $timestamp, string $body): array {
        return [
            'Content-Type' => 'application/json',
            'webhook-id' => $msgid,
            'webhook-timestamp' => (string) $timestamp,
            'webhook-signature' => self::sign(self::decode_secret($secret), $msgid, $timestamp, $body),
        ];
    }

    /**
     * A new webhook-id: "msg_" and 32 hex digits from a CSPRNG.
     *
     * @return string
     */
    public static function new_message_id(): string {
        return 'msg_' . bin2hex(random_bytes(16));
    }

    /**
     * A non-negative whole number (Moodle hands ids around as strings too), or null when absent.
     *
     * @param mixed $value The value.
     * @param string $field Its key, for the error.
     * @return int|null
     */
    private static function whole($value, string $field): ?int {
        if ($value === null || $value === '') {
            return null;
        }
        if (is_int($value) && $value >= 0) {
            return $value;
        }
        if (is_string($value) && ctype_digit($value)) {
            return (int) $value;
        }
        throw new \InvalidArgumentException($field . ' must be a whole number');
    }
}
