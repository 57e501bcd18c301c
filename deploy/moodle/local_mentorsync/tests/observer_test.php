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

use local_mentorsync\task\deliver_event;

/**
 * Tests of the event observers: they queue a delivery task with ids and times, nothing else.
 *
 * @package    local_mentorsync
 * @category   test
 * @copyright  2026 mentorsync
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 * @covers     \local_mentorsync\observer
 */
final class observer_test extends \advanced_testcase {
    /**
     * Configure the plugin and make a course with one manual-completion page.
     *
     * @param string $courses The "courses" setting; null for the new course's shortname.
     * @return array [course, cm, user]
     */
    private function setup_site(?string $courses = null): array {
        global $CFG;
        require_once($CFG->libdir . '/completionlib.php');
        $this->resetAfterTest();
        $CFG->enablecompletion = true;
        observer::reset_caches();
        $generator = $this->getDataGenerator();
        $course = $generator->create_course(['enablecompletion' => 1, 'shortname' => 'GMP-2026']);
        $page = $generator->create_module('page', ['course' => $course->id, 'idnumber' => 'GMP-2026-M1'],
            ['completion' => COMPLETION_TRACKING_MANUAL]);
        $cm = get_coursemodule_from_id('page', $page->cmid);
        $user = $generator->create_and_enrol($course, 'student');
        set_config('endpoint', 'https://mentorsync.example.org/hooks/moodle/events', 'local_mentorsync');
        set_config('secret', 'whsec_' . base64_encode(str_repeat('k', 32)), 'local_mentorsync');
        set_config('courses', $courses ?? "GMP-2026", 'local_mentorsync');
        return [$course, $cm, $user];
    }

    /**
     * The custom data of every queued delivery task.
     *
     * @return array
     */
    private function queued(): array {
        $found = [];
        foreach (\core\task\manager::get_adhoc_tasks(deliver_event::class) as $task) {
            $found[] = json_decode(json_encode($task->get_custom_data()), true);
        }
        return $found;
    }

    /**
     * A manual completion queues one task holding exactly the payload fields.
     */
    public function test_completion_queues_one_task(): void {
        [$course, $cm, $user] = $this->setup_site();
        $completion = new \completion_info($course);
        $completion->update_state($cm, COMPLETION_COMPLETE, $user->id);

        $queued = $this->queued();
        $this->assertCount(1, $queued);
        $this->assertMatchesRegularExpression('/^msg_[0-9a-f]{32}$/', $queued[0]['msgid']);
        $event = $queued[0]['event'];
        $this->assertSame(payload::FIELDS, array_keys($event));
        $this->assertSame('\core\event\course_module_completion_updated', $event['eventname']);
        $this->assertSame((int) $user->id, $event['relateduserid']);
        $this->assertSame((int) $course->id, $event['courseid']);
        $this->assertSame((int) $cm->id, $event['contextinstanceid']);
    }

    /**
     * A course not in the setting (by id or shortname) is not reported; by id it is.
     */
    public function test_only_configured_courses_are_reported(): void {
        [$course, $cm, $user] = $this->setup_site('OTHER, 99999');
        (new \completion_info($course))->update_state($cm, COMPLETION_COMPLETE, $user->id);
        $this->assertSame([], $this->queued());

        set_config('courses', "OTHER\n" . $course->id, 'local_mentorsync');
        (new \completion_info($course))->update_state($cm, COMPLETION_INCOMPLETE, $user->id);
        $this->assertCount(1, $this->queued());
    }

    /**
     * User events are always reported; nothing is queued while the plugin is not configured.
     */
    public function test_user_events(): void {
        global $CFG;
        require_once($CFG->dirroot . '/user/lib.php');
        [, , $user] = $this->setup_site('');
        user_update_user((object) ['id' => $user->id, 'city' => 'Leeds'], false);
        $queued = $this->queued();
        $this->assertCount(1, $queued);
        $this->assertSame('\core\event\user_updated', $queued[0]['event']['eventname']);
        $this->assertSame((int) $user->id, $queued[0]['event']['relateduserid']);

        set_config('endpoint', '', 'local_mentorsync');
        delete_user($user);
        $this->assertCount(1, $this->queued());
    }
}
