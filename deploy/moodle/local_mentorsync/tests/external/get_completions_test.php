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

namespace local_mentorsync\external;

use core_external\external_api;

/**
 * Tests of local_mentorsync_get_completions.
 *
 * @package    local_mentorsync
 * @category   test
 * @copyright  2026 mentorsync
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 * @covers     \local_mentorsync\external\get_completions
 */
final class get_completions_test extends \advanced_testcase {
    /**
     * A course with two manual pages, three students who completed them, and a reader.
     *
     * @return array [course, cms, users, reader]
     */
    private function setup_course(): array {
        global $CFG, $DB;
        require_once($CFG->libdir . '/completionlib.php');
        $this->resetAfterTest();
        $CFG->enablecompletion = true;
        $generator = $this->getDataGenerator();
        $course = $generator->create_course(['enablecompletion' => 1]);
        $cms = [];
        foreach (['GMP-2026-M1', 'GMP-2026-M2'] as $idnumber) {
            $page = $generator->create_module('page', ['course' => $course->id, 'idnumber' => $idnumber],
                ['completion' => COMPLETION_TRACKING_MANUAL]);
            $cms[] = get_coursemodule_from_id('page', $page->cmid);
        }
        $users = [];
        $completion = new \completion_info($course);
        for ($i = 0; $i < 3; $i++) {
            $user = $generator->create_and_enrol($course, 'student');
            foreach ($cms as $cm) {
                $completion->update_state($cm, COMPLETION_COMPLETE, $user->id);
            }
            $users[] = $user;
        }
        $DB->insert_record('course_completions', (object) ['userid' => $users[0]->id, 'course' => $course->id,
            'timeenrolled' => 0, 'timestarted' => 0, 'timecompleted' => 1790000000, 'reaggregate' => 0]);
        $reader = $generator->create_user();
        $roleid = $generator->create_role(['shortname' => 'mentorsyncreader']);
        assign_capability('local/mentorsync:readcompletions', CAP_ALLOW, $roleid, \context_system::instance());
        assign_capability('moodle/course:view', CAP_ALLOW, $roleid, \context_system::instance());
        role_assign($roleid, $reader->id, \context_system::instance());
        return [$course, $cms, $users, $reader];
    }

    /**
     * Every completion, paged, with only the allowed keys.
     */
    public function test_pages_return_only_ids_states_and_times(): void {
        [$course, , $users, $reader] = $this->setup_course();
        $this->setUser($reader);
        $activities = [];
        $courses = [];
        $cursor = '';
        $pages = 0;
        do {
            $page = get_completions::execute($course->id, 0, $cursor, 4);
            $page = external_api::clean_returnvalue(get_completions::execute_returns(), $page);
            $this->assertSame(['activities', 'courses', 'nextcursor', 'servertime'], array_keys($page));
            $activities = array_merge($activities, $page['activities']);
            $courses = array_merge($courses, $page['courses']);
            $cursor = $page['nextcursor'];
            $pages++;
        } while ($cursor !== '');
        $this->assertSame(2, $pages); // 6 activity rows + 1 course row, 4 per page.
        $this->assertCount(6, $activities);
        foreach ($activities as $row) {
            $this->assertSame(['userid', 'cmid', 'idnumber', 'completionstate', 'timemodified'], array_keys($row));
            $this->assertSame(COMPLETION_COMPLETE, $row['completionstate']);
        }
        $this->assertSame([['userid' => (int) $users[0]->id, 'timecompleted' => 1790000000]], $courses);
    }

    /**
     * "since" in the future returns nothing.
     */
    public function test_since_filters(): void {
        [$course, , , $reader] = $this->setup_course();
        $this->setUser($reader);
        $page = get_completions::execute($course->id, time() + 3600);
        $this->assertSame([], $page['activities']);
        $this->assertSame([], $page['courses']);
        $this->assertSame('', $page['nextcursor']);
    }

    /**
     * Without the capability the function refuses.
     */
    public function test_capability_required(): void {
        [$course, , $users] = $this->setup_course();
        $this->setUser($users[1]);
        $this->expectException(\required_capability_exception::class);
        get_completions::execute($course->id);
    }
}
