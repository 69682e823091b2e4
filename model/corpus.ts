// A small built-in English text from which the random models' BPE merges are learnt, so their
// tokenizers split ordinary prose into plausible sub-words. Written for this project; any change to it
// changes every random tokenizer, so tests pin the tokenizer by behaviour, not by bytes.

export const ENGLISH_CORPUS = `The old lighthouse stood at the end of the long stone pier, and every evening the keeper climbed the
narrow stairs to light the lamp. She had done this for many years, through storms and calm nights, and she
knew every step by heart. The town below was quiet in the winter. Fishing boats rested in the harbour, their
ropes creaking as the water rose and fell. Children ran along the beach after school, looking for shells and
smooth glass that the sea had polished over the years.

One morning a letter arrived from the city. It said that the lighthouse would soon be replaced by an
automatic light, and that the keeper would no longer be needed. She read the letter twice, then folded it
carefully and put it in the drawer of her kitchen table. Outside, the wind was turning from the west, and
the clouds were moving quickly across the sky. She made a cup of tea and sat by the window, thinking about
all the ships she had watched come safely home.

In the afternoon she walked into town to buy bread, milk and a newspaper. The baker asked her how she was,
and she told him about the letter. He shook his head and said that the town would not be the same without
her. People had always trusted the light, he said, because they trusted the person who kept it. A machine
might be reliable, but it would never notice a small boat in trouble, or call the harbour master when the
fog came in faster than anyone expected.

Science and engineering change the way we work, but they rarely change what we care about. A computer can
read a thousand pages in a second, yet it still has to be told which questions matter. Engineers who build
fast systems learn to measure before they optimise, to test before they trust, and to write down what they
learnt so that the next person does not have to learn it again. Good tools are simple to explain. Great
tools are simple to use, and they fail with a clear message when something is wrong.

The keeper decided to write a short history of the lighthouse before it changed. She collected old
photographs, logbooks and letters from families whose grandparents had worked on the boats. Each evening,
after lighting the lamp for what might be one of the last times, she wrote a few pages at the kitchen
table. She wrote about the great storm of the cold winter, when the waves reached the top of the pier and
the light was the only thing anyone could see for miles. She wrote about the summer when the whole town
painted the tower white again, and about the quiet nights when nothing happened at all.

When the book was finished, the town printed two hundred copies and sold them at the summer fair. The money
paid for a small museum in the old boat house, where visitors could read the logbooks and look at the great
brass lens that had turned for more than a hundred years. The keeper still walks to the end of the pier
every evening. The light turns on by itself now, but she likes to watch it, and she likes to think that
someone on a boat far away is watching it too, and knows that they are almost home.
`;
