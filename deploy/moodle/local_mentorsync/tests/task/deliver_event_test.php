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

namespace local_mentorsync\task;

/**
 * Tests of the delivery task.
 *
 * @package    local_mentorsync
 * @category   test
 * @copyright  2026 mentorsync
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 * @covers     \local_mentorsync\task\deliver_event
 */
final class deliver_event_test extends \advanced_testcase {
    /**
     * A task holding one event.
     *
     * @return deliver_event
     */
    private function task(): deliver_event {
        $task = new deliver_event();
        $task->set_custom_data([
            'msgid' => 'msg_0123456789abcdef0123456789abcdef',
            'event' => ['eventname' => '\core\event\course_completed', 'userid' => 2, 'relateduserid' => 9,
                'courseid' => 3, 'contextinstanceid' => 3, 'timecreated' => 1790000000],
        ]);
        return $task;
    }

    /**
     * Configure the endpoint and secret.
     *
     * @param string $endpoint
     */
    private function configure(string $endpoint): void {
        $this->resetAfterTest();
        set_config('endpoint', $endpoint, 'local_mentorsync');
        set_config('secret', 'whsec_' . base64_encode(str_repeat('k', 32)), 'local_mentorsync');
    }

    /**
     * A 2xx answer completes the task.
     */
    public function test_delivered(): void {
        $this->configure('https://mentorsync.example.org/hooks/moodle/events');
        \curl::mock_response('{"stored":1,"duplicates":0}');
        $this->expectOutputRegex('/event msg_0123456789abcdef0123456789abcdef delivered \(HTTP 200\)/');
        $this->task()->execute();
    }

    /**
     * A URL Moodle's cURL security blocks (localhost, by default) fails the task, so it is retried.
     */
    public function test_blocked_url_throws(): void {
        $this->configure('http://localhost:8080/hooks/moodle/events');
        $this->expectException(\moodle_exception::class);
        $this->task()->execute();
    }

    /**
     * A secret that is not a whsec_ secret fails the task.
     */
    public function test_bad_secret_throws(): void {
        $this->configure('https://mentorsync.example.org/hooks/moodle/events');
        set_config('secret', 'plain-text', 'local_mentorsync');
        $this->expectException(\moodle_exception::class);
        $this->task()->execute();
    }

    /**
     * With no endpoint the event is dropped (delivery was turned off), not retried for ever.
     */
    public function test_no_endpoint_drops(): void {
        $this->configure('');
        $this->expectOutputRegex('/no endpoint configured/');
        $this->task()->execute();
    }
}
