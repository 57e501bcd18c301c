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
 * Tests of the payload builder: the same bytes as mentorsync's Python mirror.
 *
 * The expected body and signature are the ones tests/deploy/test_moodle_plugin.py checks for the
 * same input in mentorsync's own suite.
 *
 * @package    local_mentorsync
 * @category   test
 * @copyright  2026 mentorsync
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 * @covers     \local_mentorsync\payload
 */
final class payload_test extends \basic_testcase {
    /** @var string The key b"moodle-events-key-0123456789abcd" as a whsec_ secret. */
    private const SECRET = 'whsec_bW9vZGxlLWV2ZW50cy1rZXktMDEyMzQ1Njc4OWFiY2Q=';

    /**
     * A completion event: only the listed keys, ids as integers, the fixed signature.
     */
    public function test_completion_event_body_and_signature(): void {
        $event = payload::event_from_data([
            'eventname' => '\core\event\course_module_completion_updated',
            'userid' => '7',
            'relateduserid' => 7,
            'courseid' => 3,
            'contextinstanceid' => 4,
            'timecreated' => 1790000000,
            'other' => ['completionstate' => 1],
        ]);
        $body = payload::body($event);
        $this->assertSame('{"eventname":"\\\\core\\\\event\\\\course_module_completion_updated","userid":7,'
            . '"relateduserid":7,"courseid":3,"contextinstanceid":4,"timecreated":1790000000}', $body);
        $headers = payload::headers(self::SECRET, 'msg_0123456789abcdef0123456789abcdef', 1790000005, $body);
        $this->assertSame([
            'Content-Type' => 'application/json',
            'webhook-id' => 'msg_0123456789abcdef0123456789abcdef',
            'webhook-timestamp' => '1790000005',
            'webhook-signature' => 'v1,HucVNUJUSn5RtW39aymwo2bbe6zyO7CBSmgw09pgPes=',
        ], $headers);
    }

    /**
     * A user_deleted event never carries its "other" (username, email).
     */
    public function test_other_never_leaves(): void {
        $event = payload::event_from_data([
            'eventname' => '\core\event\user_deleted',
            'userid' => 2,
            'relateduserid' => 9,
            'other' => ['username' => 'someone', 'email' => 'someone@example.org'],
        ]);
        $this->assertSame(payload::FIELDS, array_keys($event));
        $this->assertStringNotContainsString('example.org', payload::body($event));
    }

    /**
     * Secrets and ids that are not what they should be are refused.
     *
     * @dataProvider bad_inputs
     * @param callable $call
     */
    public function test_bad_inputs_throw(callable $call): void {
        $this->expectException(\InvalidArgumentException::class);
        $call();
    }

    /**
     * Bad inputs.
     *
     * @return array
     */
    public static function bad_inputs(): array {
        return [
            'no prefix' => [fn() => payload::decode_secret('c2VjcmV0c2VjcmV0c2VjcmV0')],
            'not base64' => [fn() => payload::decode_secret('whsec_not base64!')],
            'short key' => [fn() => payload::decode_secret('whsec_' . base64_encode('short'))],
            'bad name' => [fn() => payload::event_from_data(['eventname' => 'not an event', 'userid' => 1])],
            'negative id' => [fn() => payload::event_from_data(['eventname' => '\core\event\user_updated', 'userid' => -1])],
        ];
    }

    /**
     * Message ids are unique and in the shape mentorsync accepts.
     */
    public function test_message_ids(): void {
        $one = payload::new_message_id();
        $this->assertMatchesRegularExpression('/^msg_[0-9a-f]{32}$/', $one);
        $this->assertNotSame($one, payload::new_message_id());
    }
}
