Feature: Decomposing a project into subplans
  A planning agent hands subplan the files of a project and gets back a tree of
  subplans. The leaves partition the files, so each agent gets its own share of them.

  Scenario: A small project stays shallow
    Given a project with 40 files over 3 directory levels
    When the project is decomposed with defaults
    Then every file is in exactly one leaf
    And the plan is at most 2 levels deep

  Scenario: A large project goes deep
    Given a project of 6 files of 4000 bytes per directory, 4 subdirectories each, 5 levels deep
    When the project is decomposed with defaults
    Then every file is in exactly one leaf
    And the plan is at least 4 levels deep

  Scenario Outline: The first leaf rule that holds stops the split
    Given a flat directory of <files> files
    When the project is decomposed with <options>
    Then the whole project is one subplan, left whole because of "<reason>"

    Examples:
      | files | options      | reason          |
      | 2     | defaults     | below_min_files |
      | 50    | max_files 50 | fits_budget     |
      | 50    | max_depth 0  | fits_budget     |
      | 50    | defaults     | fits_budget     |

  Scenario: A flat directory over the budget is cut into chunks that fit, in one level
    Given a flat directory of 500 files of 400 bytes each
    When the project is decomposed with max_tokens 10000
    Then no subplan holds more than 100 files or 10000 tokens
    And the plan is at most 1 levels deep
    And there are between 5 and 12 leaves

  Scenario Outline: The budget is a hard bound, whatever max_depth and min_files say
    Given a project of 6 files of 4000 bytes per directory, 4 subdirectories each, 3 levels deep
    When the project is decomposed with <options>
    Then no leaf of two or more files holds more than <tokens> tokens
    And every file is in exactly one leaf

    Examples:
      | options                                | tokens |
      | max_tokens 5000, max_depth 1           | 5000   |
      | max_tokens 5000, min_files 1000        | 5000   |
      | max_tokens 20000, max_depth 2          | 20000  |

  Scenario Outline: A budget bounds every subplan
    Given a flat directory of 100 files of 400 bytes each
    When the project is decomposed with <budget>
    Then no subplan holds more than <files> files or <tokens> tokens
    And every file is in exactly one leaf

    Examples:
      | budget         | files | tokens |
      | max_files 30   | 30    | 3000   |
      | max_files 7    | 7     | 700    |
      | max_tokens 900 | 9     | 900    |

  Scenario: With stable cuts, small directories share subplans where their names anchor the cuts
    Given a project with these files:
      | path           |
      | one/a.py       |
      | two/b.py       |
      | three/c.py     |
      | four/d.py      |
      | big/1.py       |
      | big/2.py       |
      | big/3.py       |
    When the project is decomposed with max_files 4, cuts stable
    Then the top level has these subplans:
      | label            | files |
      | {big,four}       | 4     |
      | {one,three}      | 2     |
      | two              | 1     |

  Scenario: With full cuts (the default), the small subplans left over are merged
    Given a project with these files:
      | path           |
      | one/a.py       |
      | two/b.py       |
      | three/c.py     |
      | four/d.py      |
      | big/1.py       |
      | big/2.py       |
      | big/3.py       |
    When the project is decomposed with max_files 4
    Then the top level has these subplans:
      | label              | files |
      | {big,four}         | 4     |
      | {{one,three},two}  | 3     |

  Scenario: Files that import each other stay together
    Given a flat directory where 4 files import each other and 4 other files import each other
    When the project is decomposed with defaults
    Then each group of files that import each other is in one subplan

  Scenario: Re-decomposing an edited project keeps the ids of unchanged subplans
    Given a project with 40 files over 3 directory levels
    And the project is decomposed with max_files 10
    When 5 files are added under "docs" and the project is decomposed again
    Then the subplans under "src" and "tests" keep their ids
    And the leaf holding "docs/new0.md" is a new subplan

  Scenario Outline: One edited or added file re-cuts only the leaf that holds it
    Given a flat directory of 500 files of 400 bytes each
    And the project is decomposed with max_tokens 10000
    When <change> and the project is decomposed again
    Then at most 1 leaf of the first plan is cut differently
    And every file is in exactly one leaf

    Examples:
      | change                               |
      | "data/f0250.txt" grows to 9000 bytes |
      | "data/f0001.txt" grows to 30000 bytes |
      | "data/f0250b.txt" is added            |
      | "data/f0499x.txt" is added            |

  Scenario: The same files in any order give the same plan
    Given a project with 40 files over 3 directory levels
    When the project is decomposed twice, the second time with its files shuffled
    Then both plans are identical, byte for byte
